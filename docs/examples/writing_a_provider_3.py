"""
Writing a provider: an emulator.
"""

import anyio
from writing_a_provider_1 import BoxProvider
from writing_a_provider_2 import BoxEmulator

import tether
from tether.testing import Fault, FaultInjector, ManualClock, serve_asgi


async def main() -> None:
    clock = ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)

    emulator = BoxEmulator(api_key="box-key")
    faults = FaultInjector(emulator, kinds={Fault.SERVER_ERROR})
    registry.register("box", BoxProvider)
    async with serve_asgi(faults) as server:
        async with tether.SessionManager(
            registry=registry,
            config={"box": {"base_url": server.url, "api_key": "box-key"}},
            clock=clock,
            retry=tether.RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
            environ={},
        ) as manager:
            s = await manager.create("box", colour="red")
            assert s.remote_id is not None  # the box's id, from the service
            assert emulator.boxes[s.remote_id]["tag"] == s.id
            assert s.data == {"colour": "red"}
            assert (await manager.ping(s)).ok

            faults.rate = 1.0  # every request now gets a 503
            health = await manager.ping(s)
            assert health.status is tether.HealthStatus.DEGRADED
            assert faults.injected[Fault.SERVER_ERROR] == 2  # the ping and its retry
            faults.rate = 0.0

            await manager.close(s)
            assert emulator.boxes == {}

        assert server.requests[0].headers["authorization"] == "Bearer box-key"


if __name__ == "__main__":
    anyio.run(main)
