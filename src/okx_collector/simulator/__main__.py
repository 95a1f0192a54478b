"""`python -m okx_collector.simulator`: the `simulate` command on its own."""

from okx_collector.simulator.cli import simulate

if __name__ == "__main__":
    simulate()
