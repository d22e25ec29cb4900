import sys

from bench import common
from coldcopy.testing import servers
from coldcopy.testing.faults import Campaign

cluster = servers.ThrowawayCluster().start()
try:
    with common.s3_endpoint() as ep, Campaign(cluster.dsn, ep, seed=7, restart=cluster.restart) as c:
        trials = c.run(sys.argv[1].split(","), extra=int(sys.argv[2]), instants=1, others=True, log=print)
finally:
    cluster.stop()
