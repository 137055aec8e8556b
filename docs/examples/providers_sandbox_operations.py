"""
The sandbox provider: a session's own operations (files, app URL, egress, usage).

Against the emulator in process, on a manual clock.
"""

import anyio

import tether
from tether.testing import ManualClock, serve_asgi
from tether_sandbox import EgressPolicy, SandboxProvider
from tether_sandbox.emulator import SandboxEmulator


async def main() -> None:
    clock = ManualClock()
    registry = tether.ProviderRegistry(entry_points=False)
    emulator = SandboxEmulator(clock=clock.time, api_keys=("instavm_sk_docs",))
    registry.register("sandbox", SandboxProvider)
    async with (
        serve_asgi(emulator.app) as server,
        tether.SessionManager(
            registry=registry,
            config={"sandbox": {"base_url": server.url, "api_key": "instavm_sk_docs"}},
            clock=clock,
            health_checks=False,
            environ={},
        ) as manager,
        manager.session(SandboxProvider) as sb,
    ):
        await sb.upload(
            "data/input.csv", b"a,b\n1,2\n"
        )  # relative paths are under /app
        out = await sb.execute(command="cat /app/data/input.csv", language="bash")
        assert out.stdout == "a,b\n1,2\n"
        await sb.execute(command="echo done > result.txt", language="bash")
        assert await sb.download("result.txt") == b"done\n"

        url = await sb.app_url(8000)  # a public URL for port 8000 in the VM
        assert (url.port, url.status) == (8000, "active")

        assert await sb.egress() == EgressPolicy()  # deny-by-default
        wanted = EgressPolicy(allow_https=True, allowed_domains=["pypi.org"])
        assert await sb.set_egress(wanted) == wanted == await sb.egress()

        usage = await sb.usage()  # the service's own fields, in .raw
        assert usage.raw["executions"] == 2
        assert (await sb.session_info()).session_id == sb.remote_id


if __name__ == "__main__":
    anyio.run(main)
