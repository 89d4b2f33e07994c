"""Developer tool: copy the checked datasets from ../shared/data into datasets/, gzip-compressed.

Run once by a maintainer; nothing in rankbench reads ../shared at run time. Compression is
deterministic (mtime 0, no file name in the header) so re-running gives byte-identical files.
Each dataset folder gets its own MANIFEST.tsv recording, per shipped file (path relative to the folder), the sha256 of the compressed bytes (verified on every
load) and the sha256 of the original text (equal to the upstream MANIFEST.tsv).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

FOLDERS = ["trec-dl-2019", "trec-dl-2020", "beir/scifact", "beir/nfcorpus", "vaswani",
           "msmarco-passage-dev-small"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, default=Path("../shared/data"))
    ap.add_argument("--dest", type=Path, default=Path("datasets"))
    args = ap.parse_args()
    upstream = {}
    for line in (args.source / "MANIFEST.tsv").read_text().splitlines()[1:]:
        path, size, sha = line.split("\t")
        upstream[path] = (int(size), sha)
    for folder in FOLDERS:
        rows = []
        for src in sorted((args.source / folder).rglob("*")):
            if not src.is_file():
                continue
            rel = src.relative_to(args.source).as_posix()
            raw = src.read_bytes()
            raw_sha = hashlib.sha256(raw).hexdigest()
            if upstream.get(rel) != (len(raw), raw_sha):
                print(f"{rel}: does not match the upstream MANIFEST.tsv", file=sys.stderr)
                return 1
            dest = args.dest / (rel + ".gz")
            local = src.relative_to(args.source / folder).as_posix() + ".gz"
            dest.parent.mkdir(parents=True, exist_ok=True)
            packed = gzip.compress(raw, compresslevel=9, mtime=0)
            dest.write_bytes(packed)
            rows.append((local, len(packed), hashlib.sha256(packed).hexdigest(), len(raw), raw_sha))
        with open(args.dest / folder / "MANIFEST.tsv", "w") as out:
            out.write("path\tbytes\tsha256\traw_bytes\traw_sha256\n")
            for row in rows:
                out.write("\t".join(map(str, row)) + "\n")
        print(f"{folder}: {len(rows)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
