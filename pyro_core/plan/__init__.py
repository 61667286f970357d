# Capacity planning (issue 6): `pyro-core plan` and `pyro-core bench`, on the real ring algorithms.
# Owns: the public face of the package, re-exported here. Must not know: anything the modules own.
from pyro_core.plan.cli import add_bench_parser as add_bench_parser
from pyro_core.plan.cli import add_plan_parser as add_plan_parser
from pyro_core.plan.cli import main as main
from pyro_core.plan.cli import run_bench as run_bench
from pyro_core.plan.cli import run_plan as run_plan
from pyro_core.plan.scenario import Scenario as Scenario
from pyro_core.plan.scenario import ScenarioError as ScenarioError
from pyro_core.plan.scenario import Tenant as Tenant

__all__ = [
    "Scenario",
    "ScenarioError",
    "Tenant",
    "add_bench_parser",
    "add_plan_parser",
    "main",
    "run_bench",
    "run_plan",
]
