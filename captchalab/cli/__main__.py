"""``python -m captchalab.cli``: the command line."""

import sys

from captchalab.cli import main

sys.exit(main())
