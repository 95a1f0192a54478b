"""`python -m okx_collector`: the same CLI as the `okx-collector` console script."""

from okx_collector.cli import main

if __name__ == "__main__":
    main()
