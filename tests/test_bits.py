"`condbook bits` at tiny size: an untrained ResNet-18 at 32x32 on the scikit-image photographs."
import json
import pandas as pd
import pytest
from condbook import cli
from condbook.bits import load_export, smallest_width
from condbook.bitwidth import TARGETS


def test_bits_prints_and_exports_the_widths(tmp_path, capsys):
    out = tmp_path/'bits'
    cli.main(['bits', '--model', 'resnet18', '--weights', 'untrained', '--size', '32', '--preset', 'fx_x86',
              '--target', '0.5', '--calibration', '2', '--out', str(out), '--device', 'cpu'])
    said = capsys.readouterr().out
    r, table = json.loads((out/'bits.json').read_text()), pd.read_csv(out/'widths.csv')
    assert r['preset'] == 'fx_x86' and r['photos'] == {'calibration': 2, 'evaluated': 4} and len(table) == 3 * 7
    for t in TARGETS:  # the widths printed and saved are those the table gives
        for col in ('measured', 'predicted'):
            assert r['uniform'][col][t] == smallest_width(table, t, col, 0.5)
        assert f"measured: {r['uniform']['measured'][t] or 'none up to 8'} bits" in said
    a = r['allocation']
    assert a['measured'] >= 0.5 and a['torch_ao_measured'] == a['measured']  # torch.ao's model keeps the same share
    mapping, spec, widths = load_export(out/'bits.json')
    assert widths.activations == r['uniform']['measured']['both'] and set(widths.weights) == set(a['weights'])
    assert spec.reduce_range and type(mapping).__name__ == 'QConfigMapping'


@pytest.mark.parametrize('args, message', [
    (['--preset', 'tensorrt'], "--preset: expected one of pt2e_x86, fx_x86"),
    (['--target', '1.5'], 'target: expected a number in (0, 1], got'),
    (['--target', '0'], 'target: expected a number in (0, 1], got'),
    (['--calibration', '6'], 'calibration: 6 photos calibrate but 6 were read: none left to evaluate'),
    (['--calibration', '0'], 'calibration: expected an integer ≥ 1'),
])
def test_bits_bad_input_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(['bits', '--model', 'resnet18', '--weights', 'untrained', '--size', '32', '--device', 'cpu',
                  '--out', str(tmp_path/'o'), *args])
    assert e.value.code in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('condbook bits: error:') and message in err[0], err
