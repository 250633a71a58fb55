from seqbench_plugin_example.models import MinGRU
from seqbench_plugin_example.tasks import RunningParity

from seqbench.testing import check_model, check_task


def test_model_contract():
    check_model(MinGRU)


def test_task_contract():
    check_task(RunningParity)
