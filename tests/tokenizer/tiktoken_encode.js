// The reference: npm tiktoken's gpt2 encoding, in the same output format as
// `./data_prep/tokenize encode`, so that the two can be compared by hand:
//   node tests/tokenizer/tiktoken_encode.js [--allow-special] < in.txt
// Input bytes are decoded as the WHATWG TextDecoder does (ill-formed UTF-8 -> U+FFFD per maximal
// subpart), since tiktoken takes a string; a leading byte order mark is kept as text (U+FEFF), as
// Python's bytes.decode("utf-8") keeps it.
"use strict";
const path = require("path");

function loadTiktoken() {
    try {
        return require(path.resolve(__dirname, "..", "..", "node_modules", "tiktoken"));
    } catch (err) {
        throw new Error(`cannot load node_modules/tiktoken (${err.message}): run make setup`);
    }
}

// Returns {encode(bytes, allowSpecial) -> Uint32Array, decode(ids) -> Buffer, free()}.
function gpt2Encoder() {
    const enc = loadTiktoken().get_encoding("gpt2");
    const decoder = new TextDecoder("utf-8", {ignoreBOM: true});
    return {
        encode: (bytes, allowSpecial) => {
            const text = decoder.decode(bytes);
            return allowSpecial ? enc.encode(text, "all") : enc.encode_ordinary(text);
        },
        decode: (ids) => Buffer.from(enc.decode(Uint32Array.from(ids))),
        free: () => enc.free(),
    };
}

module.exports = {gpt2Encoder};

if (require.main === module) {
    const args = process.argv.slice(2);
    if (args.some((a) => a !== "--allow-special")) {
        console.error("usage: node tests/tokenizer/tiktoken_encode.js [--allow-special] < in.txt");
        process.exit(2);
    }
    const input = require("fs").readFileSync(0);
    const encoder = gpt2Encoder();
    process.stdout.write(Array.from(encoder.encode(input, args.length > 0)).join(" ") + "\n");
    encoder.free();
}
