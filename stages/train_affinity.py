"""Train AffinityNet on the affinity labels: python -m stages.train_affinity ..."""
from pipeline.affinity.train import train
from stages._args import train_on_labels
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    train_on_labels(__doc__, "train_affinity", "affinity_labels", train, argv)


if __name__ == "__main__":
    main()
