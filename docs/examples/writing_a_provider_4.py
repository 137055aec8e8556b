"""
Writing a provider: publishing the emulator.
"""

# tether_box/_emulation.py
import anyio
from writing_a_provider_1 import BoxProvider
from writing_a_provider_2 import BoxEmulator

import tether
from tether.testing import DemoScript, Emulator, ManualClock, serve_asgi


DEMO_KEY = "box-demo-key"  # a fake that only the emulator accepts


async def describe(manager: tether.SessionManager, session: tether.Session) -> str:
    return f"a {session.data['colour']} box, {session.state.value}"


def emulation() -> Emulator:
    return Emulator(
        app=BoxEmulator(api_key=DEMO_KEY),
        config={"api_key": DEMO_KEY},  # url_field="base_url" takes the URL
        demo=DemoScript(params={"colour": "brown"}, work=describe),
    )


async def main() -> None:
    clock = ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("box", BoxProvider)

    emulator = emulation()
    async with serve_asgi(emulator.app) as server:
        config = emulator.provider_config(server.url)
        assert config == {"api_key": DEMO_KEY, "base_url": server.url}
        async with tether.SessionManager(
            registry=registry, config={"box": config}, clock=clock, environ={}
        ) as manager:
            # What `tether demo` does with the script, in short.
            demo = emulator.demo
            assert demo is not None  # both optional: this emulator has them
            assert demo.work is not None
            async with manager.session("box", **demo.params) as s:
                assert await demo.work(manager, s) == "a brown box, active"


if __name__ == "__main__":
    anyio.run(main)
