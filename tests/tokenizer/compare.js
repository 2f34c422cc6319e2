// Compares `./data_prep/tokenize` with npm tiktoken's gpt2 encoding on every text of texts.js
// (ordinary encoding, and with <|endoftext|> allowed where the text asks for it), then checks
// that multi-threaded encoding of the whole corpus gives the single-threaded ids and that decode
// gives the text back. Prints which text differs at which token; exits 1 on any failure.
//   node tests/tokenizer/compare.js [path/to/tokenize]
"use strict";
const {spawn} = require("child_process");
const path = require("path");
const {allTexts, corpusTexts} = require("./texts.js");
const {gpt2Encoder} = require("./tiktoken_encode.js");

const repoRoot = path.resolve(__dirname, "..", "..");
const tokenizeBinary = path.resolve(process.argv[2] || path.join(repoRoot, "data_prep", "tokenize"));
const encoder = gpt2Encoder();
let passed = 0;
let failed = 0;

function run(args, input) {
    return new Promise((resolve, reject) => {
        const child = spawn(tokenizeBinary, args, {stdio: ["pipe", "pipe", "pipe"]});
        const out = [];
        const err = [];
        child.stdout.on("data", (d) => out.push(d));
        child.stderr.on("data", (d) => err.push(d));
        child.on("error", reject);
        child.on("close", (code) => {
            if (code !== 0) reject(new Error(`${tokenizeBinary} ${args.join(" ")} exited ${code}: ${Buffer.concat(err)}`));
            else resolve(Buffer.concat(out));
        });
        child.stdin.on("error", () => {});  // a failing child closes its stdin early; reported above
        child.stdin.end(input);
    });
}

function parseIds(output) {
    const text = output.toString("latin1");
    if (!text.endsWith("\n") || text.slice(0, -1).includes("\n")) throw new Error("output is not one line ending in a newline");
    const body = text.slice(0, -1);
    if (body === "") return [];
    return body.split(" ").map((word) => {
        if (!/^(0|[1-9]\d*)$/.test(word)) throw new Error(`output has "${word.slice(0, 20)}" where a decimal id should be`);
        return Number(word);
    });
}

const show = (ids) => JSON.stringify(encoder.decode(ids).toString("utf8"));

function report(label, expected, actual) {
    let i = 0;
    while (i < expected.length && i < actual.length && expected[i] === actual[i]) ++i;
    if (i === expected.length && i === actual.length) {
        ++passed;
        return;
    }
    ++failed;
    const context = (ids) => ids.slice(i, i + 6).map((id) => `${id}=${show([id])}`).join(" ");
    console.log(`FAIL ${label}: ${expected.length} tokens expected, ${actual.length} produced; first difference at token ${i}`);
    console.log(`     before: ${show(expected.slice(Math.max(0, i - 8), i))}`);
    console.log(`     tiktoken: ${context(expected)}`);
    console.log(`     ours:     ${context(actual)}`);
}

async function compareText(text) {
    const variants = [{label: "", args: [], allow: false}];
    if (text.special) variants.push({label: " (--allow-special)", args: ["--allow-special"], allow: true});
    for (const v of variants) {
        const expected = Array.from(encoder.encode(text.bytes, v.allow));
        let actual;
        try {
            actual = parseIds(await run(["encode", "--threads", "1", ...v.args], text.bytes));
        } catch (err) {
            ++failed;
            console.log(`FAIL ${text.name}${v.label}: ${err.message}`);
            continue;
        }
        report(text.name + v.label, expected, actual);
    }
}

async function main() {
    const texts = allTexts();
    let bytes = 0;
    // Two texts in flight: our binary runs in a child while tiktoken runs here.
    for (let i = 0; i < texts.length; i += 2) {
        await Promise.all(texts.slice(i, i + 2).map(compareText));
        bytes += texts.slice(i, i + 2).reduce((sum, t) => sum + t.bytes.length, 0);
    }
    console.log(`compared ${texts.length} texts (${(bytes / 1e6).toFixed(1)} MB) with tiktoken`);

    // The whole corpus plus the adversarial texts as one input: single- vs multi-threaded (the
    // default chunks are 1 MiB, so this input is cut at several restart points).
    const whole = Buffer.concat(corpusTexts().map((t) => t.bytes).concat(
        texts.filter((t) => !t.name.startsWith("nlp-corpus/")).map((t) => t.bytes)));
    const expected = Array.from(encoder.encode(whole, false));
    for (const threads of [1, 2, 3, 8]) {
        try {
            report(`whole input, --threads ${threads}`, expected,
                   parseIds(await run(["encode", "--threads", String(threads)], whole)));
        } catch (err) {
            ++failed;
            console.log(`FAIL whole input, --threads ${threads}: ${err.message}`);
        }
    }
    const expectedSpecial = Array.from(encoder.encode(whole, true));
    report("whole input, --threads 3 --allow-special", expectedSpecial,
           parseIds(await run(["encode", "--threads", "3", "--allow-special"], whole)));

    // Decode gives back the bytes (the text is valid UTF-8 except the invalid-UTF-8 texts,
    // which come back with their U+FFFD replacements, as tiktoken's ids say).
    const decoded = await run(["decode"], Buffer.from(expected.join(" ") + "\n"));
    const reference = encoder.decode(expected);
    if (decoded.equals(reference)) ++passed;
    else {
        ++failed;
        console.log(`FAIL decode of the whole input: ${decoded.length} bytes, expected ${reference.length}`);
    }

    encoder.free();
    console.log(`tokenizer vs tiktoken: ${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
}

main().catch((err) => {
    console.error(`compare.js: ${err.stack || err}`);
    process.exit(1);
});
