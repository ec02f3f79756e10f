// Oracle for tests/test_tokenizer_oracle.cpp: encodes and decodes with Hugging Face's pure-JS tokenizer,
// @huggingface/tokenizers (installed by scripts/fetch_test_tokenizers.sh into DIR/js/node_modules).
//
//   MULTIREF_JS_MODULES=DIR/js/node_modules node tests/js/encode.mjs TOKENIZER_DIR IN.jsonl OUT.jsonl [--add_special_tokens]
//
// TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json. Each line of IN.jsonl is either
//   {"text": s}    -> {"ids": [...], "tokens": [...]}  tokenizer.encode(s, {add_special_tokens}); the tokens are
//                     the byte-level spellings, for messages only. add_special_tokens is false unless the flag
//                     is given (the library's own default is true); a line's own "add_special_tokens": true or
//                     false overrides the flag.
//   {"ids": [...]} -> {"text": s}   tokenizer.decode(ids, {skip_special_tokens: false,
//                     clean_up_tokenization_spaces: false}): added tokens are written as their content, runs of
//                     other tokens are mapped from the byte-level alphabet to bytes and decoded as UTF-8 with
//                     TextDecoder (invalid sequences become U+FFFD, one per maximal subpart, as Rust's
//                     from_utf8_lossy). The library throws on an empty list; we answer "" for it.
// OUT.jsonl has one line per (non-blank) input line, in order. Ids are never checked against the vocabulary
// (the library would decode an unknown id as its unk_token). Exit status 2 on bad usage, 1 on any other error.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const add_special_tokens = args.includes("--add_special_tokens");
const positional = args.filter((a) => a !== "--add_special_tokens");
if (positional.length !== 3 || !process.env.MULTIREF_JS_MODULES) {
  console.error("usage: MULTIREF_JS_MODULES=DIR/js/node_modules node encode.mjs TOKENIZER_DIR IN.jsonl OUT.jsonl [--add_special_tokens]");
  process.exit(2);
}
const [tokenizer_dir, in_path, out_path] = positional;

// Import the package's ES module entry by absolute path (no resolution from this file's location).
const pkg_dir = path.resolve(process.env.MULTIREF_JS_MODULES, "@huggingface/tokenizers");
const pkg = JSON.parse(fs.readFileSync(path.join(pkg_dir, "package.json"), "utf8"));
const { Tokenizer } = await import(pathToFileURL(path.join(pkg_dir, pkg.exports["."].node.import)).href);

const read_json = (name) => JSON.parse(fs.readFileSync(path.join(tokenizer_dir, name), "utf8"));
const tokenizer = new Tokenizer(read_json("tokenizer.json"), read_json("tokenizer_config.json"));

// Lines are split on "\n" only: JSON escapes \n and \r inside strings, but U+2028/U+2029 may appear raw.
const lines = fs.readFileSync(in_path, "utf8").split("\n").filter((l) => l.length > 0);
const out = [];
for (const [n, line] of lines.entries()) {
  const item = JSON.parse(line);
  if (typeof item.text === "string") {
    const enc = tokenizer.encode(item.text, { add_special_tokens: item.add_special_tokens ?? add_special_tokens });
    out.push(JSON.stringify({ ids: enc.ids, tokens: enc.tokens }));
  } else if (Array.isArray(item.ids)) {
    const text = item.ids.length === 0 ? ""
      : tokenizer.decode(item.ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    out.push(JSON.stringify({ text }));
  } else {
    console.error(`${in_path}:${n + 1}: expected {"text": ...} or {"ids": [...]}`);
    process.exit(1);
  }
}
fs.writeFileSync(out_path, out.join("\n") + (out.length ? "\n" : ""));
