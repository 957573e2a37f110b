"""``python -m namesclf`` is the ``names`` command."""

from namesclf.cli.main import main

if __name__ == "__main__":
    main()
