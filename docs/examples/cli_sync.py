"""
The synchronous facade: the same manager, called without await.

Configured from the environment (TETHER_SANDBOX_API_KEY, and
TETHER_SANDBOX_BASE_URL for the emulator that `tether emulate sandbox` serves).
"""

import tether
from tether_sandbox import SandboxProvider


def main() -> None:
    with (
        tether.SyncSessionManager() as manager,
        manager.session(SandboxProvider, vcpu_count=2, lifetime=600) as sb,
    ):
        print(manager.ping(sb).status)  # alive
        result = sb.execute("print('hi')")  # the handle's methods, blocking
        print(result.stdout, end="")  # hi


if __name__ == "__main__":
    main()
