"""``python -m cycleisp_fast``: the ``cycleisp-fast`` command (see :mod:`cycleisp_fast.cli`)."""

from cycleisp_fast.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
