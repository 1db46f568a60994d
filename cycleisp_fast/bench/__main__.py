"""``python -m cycleisp_fast.bench``: the kernel microbenchmarks (see :mod:`cycleisp_fast.bench.cli`)."""

from cycleisp_fast.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
