"""``python -m captchalab`` (and ``torchrun -m captchalab``): the command line."""

import sys

from captchalab.cli import main

sys.exit(main())
