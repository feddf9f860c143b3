"""twistd plugin ``leifdb``: a pointer to ``leifdb.tap``, which holds the real code.

Deliberately tiny and importing nothing of LeifDB at module level: a plugin module that
fails to import silently vanishes from ``twistd --help``.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class LeifdbServiceMaker:
    tapname = "leifdb"
    description = "Run a LeifDB node (Raft key-value store, HTTP API)"

    @property
    def options(self):
        from leifdb.tap import Options

        return Options

    def makeService(self, options):
        from leifdb.tap import makeService

        return makeService(options)


leifdb = LeifdbServiceMaker()
