// Chat templates without a Jinja engine: recognize which official template a tokenizer_config.json carries, then
// render conversations byte for byte as Hugging Face's tokenizer.apply_chat_template(messages, tokenize=False,
// add_generation_prompt=...) does (system/user/assistant text messages only; no tools).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace multiref {

// ChatML:  Qwen2.5-Instruct's template (and generic ChatML): "<|im_start|>ROLE\nCONTENT<|im_end|>\n" per message,
//          content untouched; "<|im_start|>assistant\n" for the generation prompt.
// Llama3:  the original Meta-Llama-3-Instruct template: bos_token, then "<|start_header_id|>ROLE<|end_header_id|>\n\n"
//          + trimmed content + "<|eot_id|>" per message. NOTE: that template appends the assistant header
//          "<|start_header_id|>assistant<|end_header_id|>\n\n" ALWAYS, whatever add_generation_prompt says; so does
//          render_chat, to stay byte-identical with it.
// Llama31: Llama 3.1-Instruct: bos_token, a system header that is always emitted ("Cutting Knowledge Date: December
//          2023\nToday Date: DATE\n\n" + the trimmed first system message), then the Llama 3 per-message format.
// Plain:   no template: each message's content followed by "\n\n", in order (system included, roles dropped); no
//          bos_token and nothing added for the generation prompt. For base models without a chat template.
enum class ChatTemplateKind { ChatML, Llama3, Llama31, Plain };

struct ChatMessage {
  std::string role, content;
};

struct ChatRenderOptions {
  std::string bos_token;                    // e.g. "<|begin_of_text|>" for Llama; empty for Qwen (ignored by ChatML)
  std::string date_string = "26 Jul 2024";  // Llama 3.1's "Today Date" (the template's default)
};

// "chatml" | "llama3" | "llama3.1" | "plain"; anything else: Error listing the choices.
ChatTemplateKind parse_chat_template_name(const std::string& name);
std::string chat_template_name(ChatTemplateKind k);

struct DetectedTemplate {
  ChatTemplateKind kind;
  bool qwen_default_system = false;  // ChatML only: insert Qwen's default system prompt when none is given
};

// Recognizes a chat template from its text by distinctive fragments:
//   '<|im_start|>' + Qwen's default system prompt      -> ChatML with qwen_default_system
//   '<|im_start|>' without any built-in system turn     -> ChatML (generic) without it
//   '<|start_header_id|>' + 'Cutting Knowledge Date'     -> Llama31 (also Llama 3.2, whose text differs only in
//                                                          tools and in defaulting to today's date via strftime_now:
//                                                          pass date_string to reproduce a given day)
//   '<|start_header_id|>' otherwise                      -> Llama3 (the original, unconditional generation prompt)
// Templates that look like one of these but would render differently (a ChatML template with another built-in
// system prompt, with <think> handling or trimming; the revised Llama 3 template whose generation prompt depends on
// add_generation_prompt) and unknown text are Errors naming `source` and saying to pass --chat_template.
DetectedTemplate detect_chat_template(const std::string& jinja_text, const std::string& source);

// Validates a non-empty JSON messages array ([{"role":..., "content":...}, ...]): roles system/user/assistant,
// string contents, no tool calls. Errors name `where` (e.g. "file.jsonl:3").
std::vector<ChatMessage> parse_messages(const nlohmann::json& j, const std::string& where);

// Renders `messages` (non-empty; roles system/user/assistant, else an Error) with template `kind`. For ChatML,
// `qwen_default_system` controls whether Qwen's default system prompt is inserted when the conversation has no
// leading system message. Llama3 adds the assistant header even when add_generation_prompt is false (see above);
// Plain never adds anything for it.
std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const ChatRenderOptions& opts = {}, bool qwen_default_system = true);

}  // namespace multiref

namespace multiref {

// A tokenizer's chat format, resolved once: the template kind, Qwen's default-system flag and render options.
struct ChatFormat {
  ChatTemplateKind kind = ChatTemplateKind::Plain;
  bool qwen_default_system = false;
  ChatRenderOptions options;
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    return render_chat(kind, messages, add_generation_prompt, options, qwen_default_system);
  }
};

// `override_name` "" or "auto": detect from `template_text` (an Error saying to pass --chat_template when the
// tokenizer has none or an unknown one); otherwise one of the names of parse_chat_template_name.
ChatFormat resolve_chat_format(const std::string& template_text, const std::string& bos_token,
                               const std::string& override_name, const std::string& source);

}  // namespace multiref
