import os, tempfile, warnings
import pytest, torch

os.environ.setdefault('CONDBOOK_CACHE', tempfile.mkdtemp())
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
