"""
The synchronous facade: the same manager, called without await.

Configured from the environment (TETHER_SANDBOX_API_KEY, and
TETHER_SANDBOX_BASE_URL for the emulator that `tether emulate sandbox` serves).
"""

import tether
from tether_sandbox import SandboxProvider


def main() -> None:
    with tether.SyncSessionManager() as manager:
        with manager.session("sandbox", vcpu_count=2, lifetime=600) as s:
            print(manager.ping(s).status)  # alive
            sandbox = manager.provider("sandbox")
            assert isinstance(sandbox, SandboxProvider)  # typed as its own class
            result = manager.call(sandbox.execute, s, "print('hi')")
            print(result.stdout, end="")  # hi


if __name__ == "__main__":
    main()
