"""What tests and benchmarks share to run real hubs: one sandbox, one hub process, one wait.

    env = sandbox_env(root, debug=True)        # HOME, BOTSTER_*, XDG, git identity, no proxies
    repo = init_git_repo(root / "repo", env)   # a real repository with one commit
    write_plugin(repo, "name", source)         # <repo>/.botster/plugins/name/init.lua
    proc = HubProcess(repo, env); await proc.start(); await proc.wait_ready()
    await wait_until(lambda: ..., "what we wait for")
    kill_sessions(runtime)                     # sessions outlive hubs: end them

``tests/conftest.py`` builds its fixtures on it and adds the checks a test makes;
``bench/_hub.py`` builds its sandbox on it and only reports. Not part of the botster package.
"""

from harness.hubproc import UNEXPECTED, HubProcess
from harness.sandbox import (
    hub_socket,
    init_git_repo,
    kill_sessions,
    process_alive,
    sandbox_env,
    write_plugin,
)
from harness.wait import wait_until

__all__ = [
    "UNEXPECTED",
    "HubProcess",
    "hub_socket",
    "init_git_repo",
    "kill_sessions",
    "process_alive",
    "sandbox_env",
    "wait_until",
    "write_plugin",
]
