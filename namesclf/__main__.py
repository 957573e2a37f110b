"""``python -m namesclf`` is the ``names`` command."""

from .cli import main

if __name__ == "__main__":
    main()
