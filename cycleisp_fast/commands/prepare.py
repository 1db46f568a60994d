"""Prepares real RAW/sRGB training pairs for CycleISP's ISP networks: ``cycleisp-fast prepare fivek RAW_DIR -o OUT``.

Every RAW file under RAW_DIR (searched recursively: MIT-Adobe FiveK's .dng and .NEF files, or any camera's files that
LibRaw reads) gives one pair, named by the file's stem: the sRGB rendering as CycleISP's official
datasets/convert_fivek_raw2rgb.py makes it (rawpy postprocess: camera white balance, full size, sensor orientation,
no auto-brightening, 8 bits), and the RAW mosaic with its metadata (pattern, black/white levels, white balance,
colour matrix), both cropped identically so that the mosaic is RGGB. Files whose rendering does not have the
mosaic's size (as the official script finds for some FiveK cameras), files that are no 2x2 Bayer mosaic (X-Trans,
linear DNG) and files LibRaw cannot decode are skipped and listed in OUT/report.json.

Output layout (read by training with data.pairs = "OUT"; see cycleisp_fast.data.raw_rgb_pairs):
  OUT/raw/NAME.npy       uint16 (H, W) RGGB mosaic, raw sensor units
  OUT/srgb/NAME.npy      uint8 (3, H, W) rendering, aligned with the mosaic
  OUT/meta/NAME.json     metadata (written last: the pair is complete once it exists)
  OUT/skipped/NAME.json  why NAME was skipped
  OUT/report.json        every pair prepared and every file skipped, with the reason
OUT takes one run at a time (a lock file). Every file is written atomically; run the same command again to resume
(pairs prepared or skipped before are not redone;
delete OUT/skipped/NAME.json to try a file again). --jobs N prepares N files at once, one process each.

Examples:
  cycleisp-fast prepare fivek fivek_dataset/raw_photos -o fivek_prepared --jobs 8
  cycleisp-fast prepare fivek fivek_dataset/raw_photos -o fivek_val --list fivek_dataset/val_names.txt
  cycleisp-fast train rgb2raw --set data.pairs=fivek_prepared --set val.pairs=fivek_val
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from cycleisp_fast.data.files import output_problem
from cycleisp_fast.data.locks import run_folder_lock

LAYOUTS = ("fivek",)
REPORT_FILE = "report.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``prepare`` options to ``parser``."""
    parser.add_argument("layout", choices=LAYOUTS, help="fivek: a folder of RAW files (MIT-Adobe FiveK or your own)")
    parser.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="the folder of RAW files (searched recursively)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--jobs", type=int, default=1, help="files prepared at once, one process each (default 1)")
    parser.add_argument(
        "--list",
        type=Path,
        metavar="FILE",
        help="prepare only the files whose stems FILE lists, one per line (e.g. a train or test split)",
    )


def find_raw_files(raw_dir: Path, names: list[str] | None) -> dict[str, Path]:
    """Stem -> RAW file under ``raw_dir`` (recursive, sorted by path), only those of ``names`` when given.

    Raises ValueError for two files of one stem (the pairs are named by stems) or listed names not found."""
    from cycleisp_fast.data.raw import is_raw_file

    files: dict[str, Path] = {}
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file() and is_raw_file(p)):
        if names is not None and path.stem not in names:
            continue
        if path.stem in files:
            raise ValueError(
                f"two RAW files are named {path.stem!r} ({files[path.stem]} and {path}); the pairs are named by "
                "stem: prepare the folders separately into different outputs"
            )
        files[path.stem] = path
    if names is not None:
        missing = [name for name in names if name not in files]
        if missing:
            raise ValueError(
                f"--list names {len(missing)} file(s) that are not in {raw_dir}: {', '.join(missing[:5])}"
                + (" ..." if len(missing) > 5 else "")
            )
    return files


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"--list file {path} does not exist")
    names = [Path(line.strip()).stem for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"--list file {path} names no files")
    return list(dict.fromkeys(names))


def _outcome_on_disk(out: Path, name: str, source: Path) -> dict | None:
    """The outcome of an earlier run for ``name``: prepared (its metadata exists) or skipped, else None."""
    from cycleisp_fast.data.raw_rgb_pairs import entry_paths

    paths = entry_paths(out, name)
    if paths["meta"].is_file():
        return {"name": name, "source": os.fspath(source), "status": "prepared"}
    if paths["skipped"].is_file():
        try:
            return json.loads(paths["skipped"].read_text(encoding="utf-8"))
        except ValueError:
            return None  # unreadable: prepare the file again
    return None


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Prepares every RAW file of ``RAW_DIR`` into ``--out`` (resuming), writes the report; returns 0.

    Bad options end with ``parser.error``; an unwritable output raises."""
    from tqdm import tqdm

    from cycleisp_fast.data.files import atomic_path
    from cycleisp_fast.data.raw_rgb_pairs import prepare_raw_file

    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if not args.raw_dir.is_dir():
        parser.error(
            f"RAW_DIR {args.raw_dir} is not a folder"
            if args.raw_dir.exists()
            else f"RAW_DIR {args.raw_dir} does not exist"
        )
    if problem := output_problem(args.out, folder=True):
        parser.error(f"-o/--out: {problem}")
    names = _read_list(args.list) if args.list is not None else None
    files = find_raw_files(args.raw_dir, names)
    if not files:
        parser.error(f"RAW_DIR {args.raw_dir} holds no RAW files (.dng, .nef, .cr2, ... searched recursively)")
    with run_folder_lock(args.out, "prepare"):
        outcomes = {name: _outcome_on_disk(args.out, name, path) for name, path in files.items()}
        todo = [name for name, outcome in outcomes.items() if outcome is None]
        if len(todo) < len(files):
            print(f"resuming: {len(files) - len(todo)} of {len(files)} files already done in {args.out}")
        with tqdm(total=len(files), initial=len(files) - len(todo), unit="file", disable=None) as progress:
            if args.jobs == 1 or len(todo) < 2:
                for name in todo:
                    outcomes[name] = prepare_raw_file(files[name], args.out, name)
                    progress.update(1)
            else:
                context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
                pool = ProcessPoolExecutor(min(args.jobs, len(todo)), mp_context=context)
                try:
                    futures = {pool.submit(prepare_raw_file, files[name], args.out, name): name for name in todo}
                    for future in as_completed(futures):
                        outcomes[futures[future]] = future.result()
                        progress.update(1)
                finally:
                    pool.shutdown(cancel_futures=True)  # an error (a full disk) stops the files not yet started
        prepared = sorted(name for name, outcome in outcomes.items() if outcome["status"] == "prepared")
        skipped = {name: outcomes[name] for name in sorted(outcomes) if outcomes[name]["status"] != "prepared"}
        report = {
            "raw_dir": os.fspath(args.raw_dir),
            "prepared": prepared,
            "skipped": [{"name": n, "source": o["source"], "reason": o["reason"]} for n, o in skipped.items()],
        }
        with atomic_path(args.out / REPORT_FILE) as temporary:
            temporary.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    for outcome in list(skipped.values())[:10]:
        print(f"skipped {outcome['source']}: {outcome['reason']}")
    if len(skipped) > 10:
        print(f"... and {len(skipped) - 10} more")
    print(
        f"{len(prepared)} pairs in {args.out} (raw/, srgb/, meta/); {len(skipped)} file(s) skipped "
        f"(listed in {args.out / REPORT_FILE})"
    )
    return 0
