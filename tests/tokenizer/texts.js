// The texts on which our tokenizer must equal tiktoken's gpt2 encoding: the whole nlp-corpus,
// hand-picked adversarial cases, seeded random strings over a mixed alphabet, every code point
// in a few contexts, and invalid UTF-8. Each text is {name, bytes (Buffer), special (bool: also
// compare with <|endoftext|> allowed)}.
"use strict";
const fs = require("fs");
const path = require("path");

const repoRoot = path.resolve(__dirname, "..", "..");
const cp = (c) => String.fromCodePoint(c);
const utf8 = (s) => Buffer.from(s, "utf8");

// Every Unicode whitespace character (White_Space) and some look-alikes that are not whitespace.
const WHITESPACE = [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
                    0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000].map(cp);
const NOT_WHITESPACE = [0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, 0x180e, 0x1c, 0x1d, 0x1e, 0x1f, 0x00].map(cp);

function corpusTexts() {
    const dir = path.join(repoRoot, "node_modules", "nlp-corpus", "builds");
    const files = fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
    if (files.length === 0) throw new Error(`no nlp-corpus files in ${dir}: run make setup`);
    return files.map((f) => ({
        name: `nlp-corpus/${f}`,
        bytes: utf8(JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")).join("\n")),
        special: false,
    }));
}

function adversarialTexts() {
    const t = {};
    t["scripts"] = [
        "中文字符测试，繁體中文。日本語のテキスト、カタカナとひらがな。한국어 텍스트입니다.",
        "مرحبا بالعالم! هذا نص عربي مع أرقام ١٢٣٤ وعلامات ترقيم؟",
        "नमस्ते दुनिया। यह देवनागरी है: क्षत्रिय, ज्ञान, ॐ १२३।",
        "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ ๑๒๓",
        "שָׁלוֹם עוֹלָם! עברית עם ניקוד.",
        "Привет, мир! Ёжик в тумане. ЪЬЭЮЯ ѣѳѵ",
        "Γειά σου Κόσμε! ΑΒΓΔ αβγδ ϐϑϕ ἀἁἂ",
        "Բարեւ աշխարհ. გამარჯობა მსოფლიო. வணக்கம் உலகம். ሰላም ዓለም። བཀྲ་ཤིས་བདེ་ལེགས། ᠮᠣᠩᠭᠣᠯ",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝐁𝐨𝐥𝐝 ﬁﬂ Ⅻ ℌℍ ℵ",
    ].join("\n");
    t["emoji"] = "👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸🇯🇵🇩🇪 🧑🏿‍💻 1️⃣ #️⃣ 🏴󠁧󠁢󠁳󠁣󠁴󠁿 😀😃😄😁 a👍b 👍a 👍 👍  👍\n🙂🙂🙂";
    t["combining marks"] = "e\u0301 a\u0300\u0301\u0302 n\u0303o Z\u0351\u0364\u0338a\u0362\u0315l\u0334g\u0336o" +
        " \u0301start 'ś 'n\u0301 1\u0301 \u20dd \u1100\u1161\u11a8 \u0915\u094d\u0937 \u00c5 A\u030a";
    t["unicode spaces"] = WHITESPACE.map((w) => `a${w}b a${w}${w}b ${w}x  ${w}x x${w} ${w} 1${w}2 !${w}!`).join("|") + "|" +
        NOT_WHITESPACE.map((w) => `a${w}b ${w}x ${w}${w} 1${w}2`).join("|");
    t["each space at end"] = WHITESPACE.map((w) => `word${w}`).join("") + WHITESPACE.join("");
    t["crlf and tabs"] = "line one\r\nline two\r\n\r\nline four\n\n\n   indented\n\t\ttabbed\tword\r\n \r\n\t \n \t\n" +
        "trailing   \n  \n\n\r\r\r\n\u000b\u000c end\r\n";
    t["space runs"] = "a  b   c    d     e\n  x\n\n  y \t z  \t\t  w" + " ".repeat(100) + "v" + " ".repeat(100);
    t["contractions"] = "don't DON'T I'LL i'll we've WE'VE you're YOU'RE she's SHE'S I'm I'M he'd HE'D it's " +
        "'s 't 're 've 'm 'll 'd 'S 'T 'Re 'rE 'LL ''s '''ll' 's's 'x 'sup 'dd 'lll o'clock rock'n'roll " +
        "don’t it’s ʼs 's\n's 1's !'s  's \t's 'ré 'd'd";
    t["digits of other scripts"] = "٠١٢٣٤٥٦٧٨٩ ۰۱۲۳۴۵ ०१२३४५६७८९ ০১২৩ ੦੧੨ ０１２３４ ¹²³⁴ ₀₁₂ ½ ⅓ ¾ Ⅰ Ⅱ Ⅲ Ⅻ ⅰⅱⅲ " +
        "① ⑳ ㉑ 𝟎𝟏𝟐 ๑๒๓ 〇 二三 𐄇 𒐀 ᛮ 12٣4 a1 1a ½a x²";
    t["numbers"] = "123456789 3.14159 1,000,000 -42 +7 1e10 0x1F 2024-11-27 12:30 $100 100% #1 007 " +
        "1234567890123456789012345678901234567890";
    t["punctuation"] = "...!!!???,,,;;;—–-_()[]{}<>@#$%^&*~`|\\/\"' '' \"\" «» „“ ‘’ ¿¡ · • … ‰ ※ §¶ © ® ™";
    t["endoftext inside"] = "Hello<|endoftext|>World <|endoftext|> <|endoftext|><|endoftext|>\n<|endoftext|>x " +
        "<|endo|> <|endoftext <|endoftext|>  <|endoftext|>\t<|endoftext|>'s <|ENDOFTEXT|> <|endoftext|>";
    t["endoftext at both ends"] = "<|endoftext|>text<|endoftext|>";
    t["code"] = "int main(int argc, char** argv) {\n    for (int i = 0; i < argc; ++i) {\n\t\tprintf(\"%s\\n\", argv[i]);\n" +
        "    }\n    return 0;\n}\n\ndef f(x):\n    return x ** 2  # square\n\n\n<div class=\"a\">&nbsp;</div>";
    t["urls and mixed"] = "https://example.com/path?q=1&r=two#frag mail@example.org C++17 x86_64 GPT-2's 50,257 " +
        "tokens—and 'quotes'. camelCaseWord snake_case_word ALLCAPS MiXeD123abc456";
    t["other categories"] = "\u0378\u0379 \ue000\uf8ff \uffff\ufffe \u{10ffff} \u{e0001} \u{1f000} \ufffd\ufffd " +
        "\u00ad soft\u00adhyphen \u200e\u200f \u{1d173} \u0600 ʼʻˆ ˈstress ー々〆 ㄅㄆ 〃";
    t["long letter run"] = "a".repeat(20000);
    t["long letter run after space"] = " " + "a".repeat(20000) + " b";
    t["long mixed-letter run"] = "ab".repeat(5000) + "xyz".repeat(2000);
    t["long space run"] = " ".repeat(20000) + "x" + " ".repeat(20000);
    t["long newline run"] = "\n".repeat(10000) + "x" + "\r\n".repeat(5000);
    t["long digit run"] = "1234567890".repeat(1000);
    t["long punctuation run"] = "!".repeat(10000) + "'s";
    t["long CJK run"] = "的".repeat(2000) + "日本語".repeat(700);
    t["long emoji run"] = "🙂".repeat(2500);
    t["long accented run"] = "é".repeat(5000) + "e\u0301".repeat(3000);
    t["byte order mark at start"] = "\ufeffHello \ufeff world";
    t["empty"] = "";
    t["single space"] = " ";
    t["single newline"] = "\n";
    t["single apostrophe"] = "'";
    t["apostrophe s at end"] = "x's";
    t["space then apostrophe s"] = " 's";
    return Object.entries(t).map(([name, s]) => ({name: `adversarial/${name}`, bytes: utf8(s), special: true}));
}

// Seeded PRNG (xorshift32), so the "random" texts are the same on every run.
function makeRandom(seed) {
    let state = seed >>> 0 || 1;
    return () => {
        state ^= state << 13;
        state >>>= 0;
        state ^= state >>> 17;
        state ^= state << 5;
        state >>>= 0;
        return state / 4294967296;
    };
}

function randomTexts(count, seed) {
    // Weighted toward the characters whose handling differs between pattern alternatives.
    const alphabet = [
        ..."aaaabcdeisStTmMdDlLrRvVeE", ..."0123456789", "'", "'", "'", " ", " ", " ", " ", " ", "\n", "\n", "\t", "\r\n",
        ..."!?.,-_\"()", ...WHITESPACE, ...NOT_WHITESPACE, "é", "ß", "中", "日本", "한", "ا", "ब", "ไ", "Ж", "Ω", "٣", "०", "５",
        "²", "Ⅻ", "〇", "\u0301", "\u0915\u094d", "👍", "🏽", "\u200d", "🇺🇸", "<|endoftext|>", "<|", "|>", "endoftext",
        "'s", "'ll", " 's", "  ", "   ", "\ufffd", "\u{10ffff}", "\u{1d7ce}", "ǅ", "ʼ",
    ];
    const rand = makeRandom(seed);
    const texts = [];
    for (let i = 0; i < count; ++i) {
        const length = i < count / 4 ? Math.floor(rand() * 12) : Math.floor(rand() * 4000);
        let s = "";
        for (let j = 0; j < length; ++j) s += alphabet[Math.floor(rand() * alphabet.length)];
        texts.push({name: `random/seed${seed}-${i}`, bytes: utf8(s), special: true});
    }
    return texts;
}

// Every code point (but surrogates) after a letter, a digit, punctuation, a space and two
// spaces, where each class joins or splits differently; split by range so that a failure names
// the range. The planes with nothing assigned but private use (4..13, 15, 16) are sampled.
function codePointTexts() {
    const ranges = [[0x0, 0x800], [0x800, 0x3000], [0x3000, 0xa000], [0xa000, 0x10000], [0x10000, 0x20000],
                    [0x20000, 0x40000], [0x40000, 0x110000]];
    const sampled = (c) => (c >= 0x40000 && c < 0xe0000) || c >= 0xf0000;
    return ranges.map(([begin, end]) => {
        const parts = [];
        for (let c = begin; c < end; ++c) {
            if ((c >= 0xd800 && c <= 0xdfff) || (sampled(c) && (c & 0xff) > 3)) continue;
            const x = cp(c);
            parts.push(`a${x}1${x}!${x} ${x}  ${x}\n`);
        }
        return {name: `code points/U+${begin.toString(16)}..U+${(end - 1).toString(16)}`, bytes: utf8(parts.join("")),
                special: false};
    });
}

// Ill-formed UTF-8: tiktoken is given the text decoded by TextDecoder (U+FFFD per maximal
// subpart), our tokenizer the raw bytes; equal ids mean our replacement matches.
function invalidUtf8Texts() {
    const cases = {
        "stray continuation bytes": [0x61, 0x80, 0x62, 0xbf, 0xbf, 0x20, 0x80],
        "overlong encodings": [0xc0, 0xaf, 0x20, 0xc1, 0xbf, 0x20, 0xe0, 0x80, 0xaf, 0x20, 0xf0, 0x80, 0x80, 0xaf],
        "surrogates": [0xed, 0xa0, 0x80, 0x20, 0xed, 0xbf, 0xbf, 0x61, 0xed, 0x9f, 0xbf],
        "above U+10FFFF": [0xf4, 0x90, 0x80, 0x80, 0x20, 0xf5, 0x80, 0x20, 0xff, 0xfe, 0xf8, 0x88, 0x80, 0x80, 0x80],
        "truncated sequences": [0xe2, 0x82, 0x20, 0xf0, 0x9f, 0x98, 0x61, 0xc3, 0x20, 0xe2, 0x20, 0xf0, 0x9f, 0x20, 0xf0],
        "truncated at end": [0x68, 0x69, 0x20, 0xf0, 0x9f, 0x98],
        "lead bytes in a row": [0xc3, 0xc3, 0xa9, 0xe2, 0xe2, 0x82, 0xac, 0xf0, 0xf0, 0x9f, 0x98, 0x80],
        "latin-1 text": [...Buffer.from("caf", "latin1"), 0xe9, 0x20, ...Buffer.from("na", "latin1"), 0xef, 0x76, 0x65],
        "between letters and spaces": [0x61, 0xff, 0x62, 0x20, 0x20, 0xff, 0x20, 0x27, 0xff, 0x73, 0x20, 0x27, 0x73, 0xff],
    };
    const texts = Object.entries(cases).map(([name, bytes]) => ({name: `invalid utf-8/${name}`,
                                                                 bytes: Buffer.from(bytes), special: true}));
    const rand = makeRandom(7);
    for (let i = 0; i < 4; ++i) {
        const bytes = Buffer.alloc(3000);
        for (let j = 0; j < bytes.length; ++j) {  // mostly ASCII and UTF-8-looking bytes
            const r = rand();
            bytes[j] = r < 0.5 ? 0x20 + Math.floor(rand() * 95) : r < 0.6 ? 0x20 : 0x80 + Math.floor(rand() * 128);
        }
        texts.push({name: `invalid utf-8/random bytes ${i}`, bytes, special: true});
    }
    return texts;
}

// Hand-written fixture files in tests/tokenizer/fixtures/.
function fixtureTexts() {
    const dir = path.join(__dirname, "fixtures");
    return fs.readdirSync(dir).sort().map((f) => ({name: `fixtures/${f}`, bytes: fs.readFileSync(path.join(dir, f)),
                                                   special: true}));
}

function allTexts() {
    return [...fixtureTexts(), ...adversarialTexts(), ...invalidUtf8Texts(), ...randomTexts(40, 2357),
            ...codePointTexts(), ...corpusTexts()];
}

module.exports = {allTexts, corpusTexts};
