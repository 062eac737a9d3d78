"""Train IRN's boundary network on the IR labels: python -m stages.train_irn ..."""
from pipeline.affinity.irn import train_irn
from stages._args import train_on_labels
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    train_on_labels(__doc__, "train_irn", "ir_labels", train_irn, argv)


if __name__ == "__main__":
    main()
