// npm tiktoken's side of dev/bench/tokenizer_bench.sh: encode_ordinary of a file on one thread,
// and on N worker threads (each its own encoder, each a contiguous share of the lines). Prints
// one line per measurement: "<threads> <bytes> <tokens> <seconds>" (best of --repeat runs).
//   node dev/bench/tokenizer_bench_tiktoken.js FILE THREADS [REPEAT]
"use strict";
const fs = require("fs");
const path = require("path");
const {Worker, isMainThread, parentPort, workerData} = require("worker_threads");

const tiktokenPath = path.resolve(__dirname, "..", "..", "node_modules", "tiktoken");

function encodeTimed(text) {
    const enc = require(tiktokenPath).get_encoding("gpt2");
    const start = process.hrtime.bigint();
    const tokens = enc.encode_ordinary(text).length;
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    enc.free();
    return {tokens, seconds};
}

// Cuts text into `parts` pieces at newlines, as equal in size as the lines allow.
function splitAtNewlines(text, parts) {
    const pieces = [];
    let begin = 0;
    for (let i = 1; i <= parts; ++i) {
        let end = i === parts ? text.length : text.indexOf("\n", Math.floor((text.length * i) / parts));
        if (end < 0) end = text.length;
        pieces.push(text.slice(begin, end));
        begin = end;
    }
    return pieces;
}

function runWorkers(text, threads) {
    const pieces = splitAtNewlines(text, threads);
    return new Promise((resolve, reject) => {
        let ready = 0;
        let done = 0;
        let tokens = 0;
        let start;
        const workers = pieces.map((piece) => new Worker(__filename, {workerData: piece}));
        for (const w of workers) {
            w.on("error", reject);
            w.on("message", (m) => {
                if (m.ready && ++ready === threads) {  // every worker has loaded its encoder
                    start = process.hrtime.bigint();
                    for (const x of workers) x.postMessage("go");
                } else if (m.tokens !== undefined) {
                    tokens += m.tokens;
                    if (++done === threads) {
                        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
                        Promise.all(workers.map((x) => x.terminate())).then(() => resolve({tokens, seconds}));
                    }
                }
            });
        }
    });
}

async function main() {
    const [file, threadsArg, repeatArg] = process.argv.slice(2);
    const threads = Number(threadsArg);
    const repeat = Number(repeatArg || 3);
    if (!file || !(threads >= 1)) {
        console.error("usage: node dev/bench/tokenizer_bench_tiktoken.js FILE THREADS [REPEAT]");
        process.exit(2);
    }
    const bytes = fs.statSync(file).size;
    const text = new TextDecoder("utf-8", {ignoreBOM: true}).decode(fs.readFileSync(file));
    for (const n of threads === 1 ? [1] : [1, threads]) {
        let best = null;
        for (let r = 0; r < repeat; ++r) {
            const result = n === 1 ? encodeTimed(text) : await runWorkers(text, n);
            if (best === null || result.seconds < best.seconds) best = result;
        }
        console.log(`${n} ${bytes} ${best.tokens} ${best.seconds}`);
    }
}

if (isMainThread) {
    main().catch((err) => {
        console.error(`tokenizer_bench_tiktoken.js: ${err.stack || err}`);
        process.exit(1);
    });
} else {
    const enc = require(tiktokenPath).get_encoding("gpt2");
    parentPort.postMessage({ready: true});
    parentPort.once("message", () => {
        const tokens = enc.encode_ordinary(workerData).length;
        enc.free();
        parentPort.postMessage({tokens});
    });
}
