// Chat templates: every expected string below was written by hand from the official template text (the comment over
// each says which lines produce it), never captured from render_chat. This file includes no torch, so it also builds
// standalone: g++ -std=c++17 -Isrc -Itests -DMULTIREF_SOURCE_DIR='"..."' src/util/common.cpp
// src/tokenizer/chat_template.cpp <this> -lgtest -lgtest_main -pthread
#include <gtest/gtest.h>

#include <initializer_list>

#include "test_util_core.h"
#include "tokenizer/chat_template.h"
#include "util/common.h"

using namespace multiref;
using namespace multiref::testing;
using json = nlohmann::json;

namespace {

const std::string kBos = "<|begin_of_text|>";

ChatRenderOptions llama_opts() {
  ChatRenderOptions o;
  o.bos_token = kBos;
  return o;
}

// The fixed conversations.
const std::vector<ChatMessage> kSysUser = {{"system", "You are a math tutor."}, {"user", "What is 2+2?"}};
const std::vector<ChatMessage> kUserOnly = {{"user", "Hi"}};
const std::vector<ChatMessage> kMultiTurn = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
const std::vector<ChatMessage> kAssistantLast = {{"user", "Hi"}, {"assistant", "Hello!"}};
// Leading/trailing spaces, newlines and a tab; inner newlines must survive any trim.
const std::vector<ChatMessage> kWhitespace = {{"system", "  Be brief.\n"}, {"user", "\n  Tell me\n a joke. \t\n\n"}};
// Non-ASCII, with Unicode whitespace at the ends (U+00A0 NO-BREAK SPACE before, U+3000 IDEOGRAPHIC SPACE after):
// Jinja's trim is Python's str.strip(), which removes those too.
const std::vector<ChatMessage> kUnicode = {{"user", "\xc2\xa0Привет, 世界! ¿Qué tal? 🙂"},
                                           {"assistant", "Très bien. 日本語\xe3\x80\x80"}};
// A second system message after the first turn, and a system message that is not first.
const std::vector<ChatMessage> kTwoSystems = {{"system", "S1"}, {"user", "U1"}, {"system", "S2"}, {"user", "U2"}};
const std::vector<ChatMessage> kLateSystem = {{"user", "U1"}, {"system", "S2"}};

}  // namespace

// ---------------------------------------------------------------------------------------------------- Qwen2.5 ChatML

TEST(ChatTemplate, ChatMLSystemUserWithGenerationPrompt) {
  // `'<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n'` (first message is system), the loop's
  // `'<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n'` for the user (the system message is
  // loop.first and skipped), then `'<|im_start|>assistant\n'` under `if add_generation_prompt`.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kSysUser, true),
            "<|im_start|>system\nYou are a math tutor.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, ChatMLUserOnlyGetsQwenDefaultSystem) {
  // The `else` branch: `'<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful
  // assistant.<|im_end|>\n'`, then the user turn and the generation prompt as above.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kUserOnly, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Generic ChatML (qwen_default_system = false): only the loop and the generation prompt.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kUserOnly, true, {}, false),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // Without the generation prompt nothing follows the last <|im_end|>\n.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kUserOnly, false, {}, false), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, ChatMLMultiTurn) {
  // System from the first branch; user, assistant (`message.role == "assistant" and not message.tool_calls`) and user
  // from the loop's first branch; generation prompt.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kMultiTurn, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, ChatMLAssistantLastNoGenerationPrompt) {
  // Default system turn, the two loop turns; `if add_generation_prompt` false adds nothing.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kAssistantLast, false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n");
}

TEST(ChatTemplate, ChatMLKeepsWhitespace) {
  // The Qwen template concatenates message.content with no `| trim`: contents go through byte for byte.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kWhitespace, true),
            "<|im_start|>system\n  Be brief.\n<|im_end|>\n"
            "<|im_start|>user\n\n  Tell me\n a joke. \t\n\n<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, ChatMLNonAscii) {
  // Default system turn, then the two loop turns with contents untouched (the NBSP and U+3000 stay).
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kUnicode, false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n\xc2\xa0Привет, 世界! ¿Qué tal? 🙂<|im_end|>\n"
            "<|im_start|>assistant\nTrès bien. 日本語\xe3\x80\x80<|im_end|>\n");
}

TEST(ChatTemplate, ChatMLSystemMessagesAfterTheFirst) {
  // `(message.role == "system" and not loop.first)`: a later system message is rendered as an ordinary turn.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kTwoSystems, false),
            "<|im_start|>system\nS1<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
            "<|im_start|>system\nS2<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n");
  // messages[0] is not system, so the default system turn comes first and the later system message follows.
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, kLateSystem, false),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nU1<|im_end|>\n<|im_start|>system\nS2<|im_end|>\n");
}

// ------------------------------------------------------------------------------------------ original Llama 3 Instruct

TEST(ChatTemplate, Llama3SystemUserWithGenerationPrompt) {
  // `{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim +
  // '<|eot_id|>' %}`, with `bos_token + content` for loop.index0 == 0, then the final
  // `{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}`.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, kSysUser, true, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a math tutor.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama3UserOnly) {
  // No default system prompt: bos_token goes on whatever message comes first.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, kUserOnly, true, llama_opts()),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama3MultiTurn) {
  // Four loop turns (bos on the first), then the unconditional assistant header.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, kMultiTurn, true, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama3AssistantLastStillGetsAssistantHeader) {
  // The original template's trailing `{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}` is outside any
  // `if add_generation_prompt`, so it appears even with add_generation_prompt=false.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, kAssistantLast, false, llama_opts()),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama3TrimsContent) {
  // `message['content'] | trim`: the filter binds tighter than `+`, so only the content is stripped (ends only; the
  // inner "\n " stays), and the header's "\n\n" is kept.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, kWhitespace, true, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nTell me\n a joke.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama3NonAsciiAndUnicodeTrim) {
  // `| trim` is Python's str.strip(): the leading U+00A0 and the trailing U+3000 go as well.
  EXPECT_EQ(
      render_chat(ChatTemplateKind::Llama3, kUnicode, false, llama_opts()),
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nПривет, 世界! ¿Qué tal? 🙂<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\nTrès bien. 日本語<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama3EmptyBos) {
  // bos_token is whatever the caller passes; empty renders nothing.
  EXPECT_EQ(
      render_chat(ChatTemplateKind::Llama3, kUserOnly, true),
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

// ----------------------------------------------------------------------------------------------- Llama 3.1 Instruct

TEST(ChatTemplate, Llama31SystemUserWithGenerationPrompt) {
  // `{{- bos_token }}`; `system_message = messages[0]['content']|trim` and `messages = messages[1:]`; then
  // `"<|start_header_id|>system<|end_header_id|>\n\n"`, `"Cutting Knowledge Date: December 2023\n"`,
  // `"Today Date: " + date_string + "\n\n"`, `system_message`, `"<|eot_id|>"`; the loop's
  // `'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>'`;
  // `'<|start_header_id|>assistant<|end_header_id|>\n\n'` under `if add_generation_prompt`.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kSysUser, true, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
            "You are a math tutor.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama31UserOnlyStillHasSystemHeader) {
  // `system_message = ""`, but the system header, cutoff and date are emitted unconditionally.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kUserOnly, true, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama31MultiTurnAndDate) {
  // As above with date_string set (the template only defaults it `if not date_string is defined`).
  ChatRenderOptions o = llama_opts();
  o.date_string = "01 Jan 2025";
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kMultiTurn, true, o),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama31AssistantLastNoGenerationPrompt) {
  // Unlike the original Llama 3 template, 3.1 adds the assistant header only `if add_generation_prompt`.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kAssistantLast, false, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>");
}

TEST(ChatTemplate, Llama31TrimsSystemAndContent) {
  // `messages[0]['content']|trim` for the system message, `message['content'] | trim` in the loop.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kWhitespace, true, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nTell me\n a joke.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama31NonAscii) {
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kUnicode, false, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nПривет, 世界! ¿Qué tal? 🙂<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nTrès bien. 日本語<|eot_id|>");
}

TEST(ChatTemplate, Llama31SystemMessagesAfterTheFirst) {
  // Only messages[0] is pulled into the system header; a later system message is an ordinary loop turn, and a system
  // message that is not first leaves the header's system_message empty.
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kTwoSystems, false, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nS1<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
            "<|start_header_id|>system<|end_header_id|>\n\nS2<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|>");
  EXPECT_EQ(render_chat(ChatTemplateKind::Llama31, kLateSystem, false, llama_opts()),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
            "<|start_header_id|>system<|end_header_id|>\n\nS2<|eot_id|>");
}

// ------------------------------------------------------------------------------------------------------------ Plain

TEST(ChatTemplate, PlainJoinsContents) {
  // "<content>\n\n" per message, untrimmed, no bos, nothing for the generation prompt.
  EXPECT_EQ(render_chat(ChatTemplateKind::Plain, kMultiTurn, true, llama_opts()),
            "Be brief.\n\nHi\n\nHello!\n\nBye\n\n");
  EXPECT_EQ(render_chat(ChatTemplateKind::Plain, kWhitespace, false),
            "  Be brief.\n\n\n\n  Tell me\n a joke. \t\n\n\n\n");
}

TEST(ChatTemplate, RenderRejectsBadMessages) {
  for (auto k :
       {ChatTemplateKind::ChatML, ChatTemplateKind::Llama3, ChatTemplateKind::Llama31, ChatTemplateKind::Plain}) {
    expect_error([&] { render_chat(k, {}, true); }, {"no messages"});
    expect_error([&] { render_chat(k, {{"user", "x"}, {"tool", "y"}}, true); }, {"message 1", "\"tool\""});
  }
}

// -------------------------------------------------------------------------------------------------------- detection

TEST(ChatTemplate, DetectsOfficialTemplates) {
  std::string data = fixture_dir();
  std::string dir = data + "/tokenizers/";

  std::string qwen_jinja = read_file(dir + "chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja");
  auto d = detect_chat_template(qwen_jinja, "qwen.jinja");
  EXPECT_EQ(d.kind, ChatTemplateKind::ChatML);
  EXPECT_TRUE(d.qwen_default_system);

  json qwen_cfg = json::parse(read_file(dir + "qwen2.5/tokenizer_config.json"));
  EXPECT_EQ(qwen_cfg["chat_template"].get<std::string>(), qwen_jinja);
  d = detect_chat_template(qwen_cfg["chat_template"].get<std::string>(), "qwen2.5/tokenizer_config.json");
  EXPECT_EQ(d.kind, ChatTemplateKind::ChatML);
  EXPECT_TRUE(d.qwen_default_system);

  d = detect_chat_template(read_file(dir + "chat_templates/meta-llama-Llama-3.1-8B-Instruct.jinja"), "l31");
  EXPECT_EQ(d.kind, ChatTemplateKind::Llama31);
  // Llama 3.2 differs from 3.1 only in tools and in defaulting date_string to today.
  d = detect_chat_template(read_file(dir + "chat_templates/meta-llama-Llama-3.2-3B-Instruct.jinja"), "l32");
  EXPECT_EQ(d.kind, ChatTemplateKind::Llama31);

  json llama_cfg = json::parse(read_file(dir + "llama3/tokenizer_config.json"));
  d = detect_chat_template(llama_cfg["chat_template"].get<std::string>(), "llama3/tokenizer_config.json");
  EXPECT_EQ(d.kind, ChatTemplateKind::Llama3);
  EXPECT_EQ(llama_cfg["bos_token"].get<std::string>(), kBos);
}

TEST(ChatTemplate, DetectsGenericChatMLWithoutQwenDefault) {
  // The generic ChatML template (as in many tokenizer_config.json files): no built-in system turn.
  std::string generic =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
      "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  auto d = detect_chat_template(generic, "generic");
  EXPECT_EQ(d.kind, ChatTemplateKind::ChatML);
  EXPECT_FALSE(d.qwen_default_system);
}

TEST(ChatTemplate, RejectsUnknownAndLookalikeTemplates) {
  expect_error([] { detect_chat_template("{{ messages[0]['content'] }}", "my/tokenizer_config.json"); },
               {"my/tokenizer_config.json", "--chat_template"});
  expect_error([] { detect_chat_template("", "empty.jinja"); }, {"empty.jinja", "--chat_template"});
  // Qwen2's template inserts "You are a helpful assistant." instead of Qwen2.5's prompt.
  expect_error(
      [] {
        detect_chat_template(
            "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are "
            "a helpful assistant.<|im_end|>\\n' }}{% endif %}",
            "qwen2");
      },
      {"qwen2", "system prompt", "--chat_template"});
  expect_error([] { detect_chat_template("<|im_start|>assistant\\n<think>\\n", "qwen3"); },
               {"qwen3", "<think>", "--chat_template"});
  // Meta's revised Llama 3 template makes the trailing assistant header conditional.
  expect_error(
      [] {
        detect_chat_template(
            "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
            "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
            "{% endif %}",
            "llama3-revised");
      },
      {"llama3-revised", "revised", "--chat_template"});
}

// ------------------------------------------------------------------------------------------------ names and parsing

TEST(ChatTemplate, Names) {
  for (auto k :
       {ChatTemplateKind::ChatML, ChatTemplateKind::Llama3, ChatTemplateKind::Llama31, ChatTemplateKind::Plain})
    EXPECT_EQ(parse_chat_template_name(chat_template_name(k)), k);
  EXPECT_EQ(chat_template_name(ChatTemplateKind::Llama31), "llama3.1");
  expect_error([] { parse_chat_template_name("qwen"); }, {"'qwen'", "chatml", "llama3", "llama3.1", "plain"});
  expect_error([] { parse_chat_template_name(""); }, {"chatml, llama3, llama3.1, plain"});
  expect_error([] { parse_chat_template_name("Llama3"); }, {"'Llama3'"});
}

TEST(ChatTemplate, ParseMessages) {
  auto m = parse_messages(json::parse(R"([{"role":"system","content":"s"},{"role":"user","content":"é\n"},
                                          {"role":"assistant","content":"","name":"ignored"}])"),
                          "f.jsonl:1");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[1].content, "é\n");
  EXPECT_EQ(m[2].role, "assistant");
  EXPECT_EQ(m[2].content, "");
}

TEST(ChatTemplate, ParseMessagesErrors) {
  auto bad = [](const char* text, std::initializer_list<std::string> frags) {
    expect_error([&] { parse_messages(json::parse(text), "data.jsonl:3"); }, frags);
  };
  bad(R"({"role":"user","content":"x"})", {"data.jsonl:3", "array"});
  bad(R"("hello")", {"data.jsonl:3", "array"});
  bad(R"([])", {"data.jsonl:3", "empty"});
  bad(R"([42])", {"data.jsonl:3", "message 0", "object"});
  bad(R"([{"content":"x"}])", {"data.jsonl:3", "message 0", "\"role\""});
  bad(R"([{"role":7,"content":"x"}])", {"data.jsonl:3", "message 0", "\"role\" must be a string"});
  bad(R"([{"role":"user"}])", {"data.jsonl:3", "message 0", "\"content\""});
  bad(R"([{"role":"user","content":"a"},{"role":"user","content":5}])", {"data.jsonl:3", "message 1", "string"});
  bad(R"([{"role":"user","content":null}])", {"data.jsonl:3", "\"content\" must be a string"});
  bad(R"([{"role":"user","content":[{"type":"text","text":"x"}]}])", {"data.jsonl:3", "\"content\" must be a string"});
  bad(R"([{"role":"tool","content":"x"}])", {"data.jsonl:3", "\"tool\"", "system, user and assistant"});
  bad(R"([{"role":"User","content":"x"}])", {"data.jsonl:3", "\"User\""});
  bad(R"([{"role":"assistant","content":"","tool_calls":[]}])", {"data.jsonl:3", "tool_calls"});
}
