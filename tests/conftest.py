"""Session-wide test set-up.

``IGOR_ALLOW_TEST_SWITCHES=1`` lets test-only switches (``test_disable_fencing``) be turned on;
nodes refuse them without it. Only the test harness sets it: here, for this process and every
node process the tests start (they inherit the environment).
"""

import os

os.environ["IGOR_ALLOW_TEST_SWITCHES"] = "1"
