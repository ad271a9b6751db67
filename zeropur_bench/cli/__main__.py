"""``python -m zeropur_bench.cli``, as ``zeropur-bench``."""
from . import main

if __name__ == "__main__":  # pragma: no cover
    main()
