"""A command's module that is also a Python function: `graphpath.train(...)` and
`python -m graphpath.train` are one name.

`import graphpath.train` binds the attribute `graphpath.train` to the module (Python's import
system does that for every submodule), so a plain function of that name in `graphpath/__init__`
would be replaced by the module the moment anything imports the command. Instead the command's
module is itself callable: its class becomes `CommandModule`, whose `__call__` runs the function
named by the module's `FUNCTION` ("module:attribute"), imported only when called. The name then
means the same object whether the function is used before or after the module is imported, and
`python -m graphpath.train` still runs the module as a script.
"""
from __future__ import annotations

import sys
import types
from importlib import import_module


class CommandModule(types.ModuleType):
    """A module whose call runs `FUNCTION` ("package.module:function"), imported on first call."""

    def __call__(self, *args, **kwargs):
        module, _, name = self.FUNCTION.partition(":")
        return getattr(import_module(module), name)(*args, **kwargs)


def make_command(module_name: str, function: str, cli: str):
    """Make the module `module_name` (already in sys.modules) a CommandModule calling `function`;
    returns its command line's `main(argv=None) -> int` (`cli`), imported when run."""
    module = sys.modules[module_name]
    module.FUNCTION = function
    module.__class__ = CommandModule

    def main(argv=None) -> int:
        where, _, name = cli.partition(":")
        return getattr(import_module(where), name)(argv)

    return main
