"""``python -m zeropur_bench``: the CLI (also what ``torchrun -m zeropur_bench run ...`` starts per rank)."""
from .cli import main

if __name__ == "__main__":
    main(prog_name="zeropur-bench")
