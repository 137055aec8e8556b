"""
``python -m tether._cli``, the same as the ``tether`` console script.
"""

import sys

from tether._cli import main


sys.exit(main())
