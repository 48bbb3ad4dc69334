"""File formats: PFM, KITTI 16-bit PNG, RGB images, colour map, Middlebury calib.txt."""

import cv2
import numpy as np
import pytest

from dtp_stereo.data import formats


def _pfm_bytes(arr: np.ndarray, little: bool) -> bytes:
    """Hand-written PFM (independent of write_pfm): rows bottom-to-top."""
    kind = b"PF" if arr.ndim == 3 else b"Pf"
    h, w = arr.shape[:2]
    dt = "<f4" if little else ">f4"
    header = kind + f"\n{w} {h}\n{-1.0 if little else 1.0}\n".encode()
    return header + np.ascontiguousarray(arr[::-1]).astype(dt).tobytes()


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_read_pfm_handwritten(tmp_path, little, channels):
    rng = np.random.default_rng(0)
    shape = (5, 7) if channels == 1 else (5, 7, 3)
    arr = rng.normal(size=shape).astype(np.float32) * 50
    arr[0, 0] = np.inf
    path = tmp_path / "a.pfm"
    path.write_bytes(_pfm_bytes(arr, little))
    out = formats.read_pfm(path)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_array_equal(out, arr)  # exact, inf included, top row first


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 3), (4, 6, 1)])
def test_pfm_round_trip(tmp_path, little, shape):
    arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 3.5
    path = tmp_path / "b.pfm"
    formats.write_pfm(path, arr, little_endian=little)
    raw = path.read_bytes()
    assert raw.startswith(b"PF\n" if len(shape) == 3 and shape[2] == 3 else b"Pf\n")
    scale = float(raw.split(b"\n")[2])
    assert (scale < 0) == little
    out = formats.read_pfm(path)
    np.testing.assert_array_equal(out, arr.reshape(out.shape))


def test_pfm_readable_by_opencv(tmp_path):
    arr = np.random.default_rng(1).uniform(0, 100, (6, 9)).astype(np.float32)
    path = tmp_path / "c.pfm"
    formats.write_pfm(path, arr)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), arr)


def test_pfm_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pfm"):
        formats.read_pfm(tmp_path / "missing.pfm")
    bad = tmp_path / "bad.pfm"
    bad.write_bytes(b"P6\n2 2\n255\n" + bytes(12))
    with pytest.raises(formats.FormatError, match="bad.pfm.*header"):
        formats.read_pfm(bad)
    nonnum = tmp_path / "nonnum.pfm"
    nonnum.write_bytes(b"Pf\nx 2\n-1.0\n" + bytes(16))
    with pytest.raises(formats.FormatError, match="nonnum.pfm"):
        formats.read_pfm(nonnum)
    short = tmp_path / "short.pfm"
    short.write_bytes(b"Pf\n4 4\n-1.0\n" + bytes(60))  # needs 64 bytes
    with pytest.raises(formats.FormatError, match="short.pfm.*truncated"):
        formats.read_pfm(short)


def test_kitti_disparity_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 65536, (6, 10)).astype(np.uint16)
    raw[0, :3] = 0
    path = tmp_path / "000000_10.png"
    cv2.imwrite(str(path), raw)
    disp, valid = formats.read_kitti_disparity(path)
    assert disp.dtype == np.float32 and valid.dtype == bool
    np.testing.assert_array_equal(disp, raw.astype(np.float32) / 256.0)
    np.testing.assert_array_equal(valid, raw > 0)
    # write -> read is exact for values on the 1/256 grid, invalid pixels become 0
    out = tmp_path / "out.png"
    formats.write_kitti_disparity(out, disp, valid=valid)
    np.testing.assert_array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), raw)
    formats.write_disparity_png16(tmp_path / "p16.png", np.array([[1.5, np.nan], [-2, 300.0]]))
    back = cv2.imread(str(tmp_path / "p16.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, np.array([[384, 0], [0, 65535]], np.uint16))


def test_kitti_rejects_8bit(tmp_path):
    path = tmp_path / "eight.png"
    cv2.imwrite(str(path), np.zeros((3, 3), np.uint8))
    with pytest.raises(formats.FormatError, match="eight.png.*16-bit"):
        formats.read_kitti_disparity(path)


def test_read_image_rgb_variants(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (5, 6, 3)).astype(np.uint8)
    formats.write_image_rgb(tmp_path / "c.png", rgb)
    np.testing.assert_array_equal(formats.read_image_rgb(tmp_path / "c.png"), rgb)
    # OpenCV writes BGR: channel order must be swapped back
    cv2.imwrite(str(tmp_path / "bgr.png"), rgb)
    np.testing.assert_array_equal(formats.read_image_rgb(tmp_path / "bgr.png"), rgb[:, :, ::-1])
    grey = rgb[:, :, 0]
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    out = formats.read_image_rgb(tmp_path / "g.png")
    assert out.shape == (5, 6, 3)
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))
    g16 = grey.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    np.testing.assert_array_equal(formats.read_image_rgb(tmp_path / "g16.png")[:, :, 1], grey)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        formats.read_image_rgb(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(formats.FormatError, match="junk.png"):
        formats.read_image_rgb(tmp_path / "junk.png")


def test_mask_png(tmp_path):
    m = np.array([[255, 128, 0]], np.uint8)
    cv2.imwrite(str(tmp_path / "mask0nocc.png"), m)
    np.testing.assert_array_equal(formats.read_mask_png(tmp_path / "mask0nocc.png"),
                                  [[True, False, False]])


def test_colorize_disparity():
    disp = np.tile(np.linspace(0, 64, 8, dtype=np.float32), (4, 1))
    disp[0, 0] = np.nan
    invalid = np.zeros_like(disp, dtype=bool)
    invalid[1, 1] = True
    col = formats.colorize_disparity(disp, 64, invalid_mask=invalid)
    assert col.shape == (4, 8, 3) and col.dtype == np.uint8
    assert not col[0, 0].any() and not col[1, 1].any()
    assert col[2, 7].any()  # valid pixels are coloured
    assert not np.array_equal(col[2, 2], col[2, 7])  # colour varies with disparity
    with pytest.raises(ValueError):
        formats.colorize_disparity(disp, 0)


def test_colorize_disparity_min_disp_marks_below_black():
    disp = np.array([[np.nan, 0.0, 10.0, 64.0]], dtype=np.float32)
    color = formats.colorize_disparity(disp, 64.0, min_disp=1.0)
    assert color.shape == (1, 4, 3) and color.dtype == np.uint8
    assert (color[0, 0] == 0).all() and (color[0, 1] == 0).all()
    assert not np.array_equal(color[0, 2], color[0, 3])
    # without min_disp, 0 is a valid disparity at the bottom of the colour map
    assert formats.colorize_disparity(disp, 64.0)[0, 1].any()


CALIB = """cam0=[3997.684 0 1176.728; 0 3997.684 1011.728; 0 0 1]
cam1=[3997.684 0 1307.839; 0 3997.684 1011.728; 0 0 1]
doffs=131.111
baseline=193.001
width=2964
height=1988
ndisp=280
isint=0
vmin=31
vmax=257
dyavg=0.918
dymax=1.516
"""


def test_middlebury_calib(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(CALIB)
    c = formats.read_middlebury_calib(path)
    assert c["cam0"].shape == (3, 3) and c["cam0"][0, 0] == pytest.approx(3997.684)
    assert c["cam1"][0, 2] == pytest.approx(1307.839)
    assert c["doffs"] == pytest.approx(131.111) and c["baseline"] == pytest.approx(193.001)
    assert (c["width"], c["height"], c["ndisp"], c["isint"]) == (2964, 1988, 280, 0)
    assert c["vmin"] == 31 and c["vmax"] == 257
    assert c["dyavg"] == pytest.approx(0.918) and c["dymax"] == pytest.approx(1.516)
    (tmp_path / "bad.txt").write_text("cam0=[1 0 2; 0 1 2]\ncam1=[1 0 2; 0 1 2; 0 0 1]\n")
    with pytest.raises(formats.FormatError, match="bad.txt.*cam0"):
        formats.read_middlebury_calib(tmp_path / "bad.txt")
    (tmp_path / "nokey.txt").write_text("width=3\n")
    with pytest.raises(formats.FormatError, match="nokey.txt.*cam0"):
        formats.read_middlebury_calib(tmp_path / "nokey.txt")
    (tmp_path / "noeq.txt").write_text("cam0 [1 0 0; 0 1 0; 0 0 1]\n")
    with pytest.raises(formats.FormatError, match="noeq.txt:1"):
        formats.read_middlebury_calib(tmp_path / "noeq.txt")


def test_pfm_crlf_header(tmp_path):
    arr = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    path = tmp_path / "crlf.pfm"
    path.write_bytes(b"Pf\r\n2 2\r\n-1.0\r\n" + arr[::-1].astype("<f4").tobytes())
    np.testing.assert_array_equal(formats.read_pfm(path), arr)


def test_pfm_header_is_checked_against_the_file_size_before_reading(tmp_path, monkeypatch):
    """A 4x3 header on a big file: the raster read is the header's 48 bytes, not the file."""
    import builtins

    path = tmp_path / "big.pfm"
    with open(path, "wb") as f:
        f.write(b"Pf\n4 3\n-1.0\n" + np.arange(12, dtype="<f4").tobytes())
        f.truncate(64 * 1024 * 1024)  # sparse: 64 MiB on disk
    reads = []
    real_open = builtins.open

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def read(self, n=-1):
            data = self.fh.read(n)
            reads.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    arr = formats.read_pfm(path)
    assert arr.shape == (3, 4) and sum(reads) < 8192
    short = tmp_path / "short.pfm"
    with real_open(short, "wb") as f:
        f.write(b"Pf\n4000 3000\n-1.0\n" + bytes(100))
    with pytest.raises(formats.FormatError, match=r"short\.pfm: truncated PFM data"):
        formats.read_pfm(short)


def test_image_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    """A PNG / JPEG whose header announces more pixels than the limit is not decoded."""
    import cv2

    small = np.zeros((40, 50, 3), np.uint8)
    for ext in ("png", "jpg"):
        path = tmp_path / f"img.{ext}"
        cv2.imwrite(str(path), small)
        assert formats.image_size_from_header(path) == (50, 40)
    data = (tmp_path / "img.jpg").read_bytes()  # fill bytes before the first marker
    (tmp_path / "fill.jpg").write_bytes(data[:2] + b"\xff\xff" + data[2:])
    assert formats.image_size_from_header(tmp_path / "fill.jpg") == (50, 40)
    monkeypatch.setenv("DTP_STEREO_MAX_IMAGE_PIXELS", "1000")
    decoded = []
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: decoded.append(a) or small)
    for ext in ("png", "jpg"):
        with pytest.raises(formats.FormatError, match=rf"img\.{ext}: image of 50x40 pixels"):
            formats.read_image_rgb(tmp_path / f"img.{ext}")
    assert decoded == []
    monkeypatch.setenv("DTP_STEREO_MAX_IMAGE_PIXELS", "2e3")
    assert formats.read_image_rgb(tmp_path / "img.png").shape == (40, 50, 3)
    monkeypatch.setenv("DTP_STEREO_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(formats.FormatError, match="DTP_STEREO_MAX_IMAGE_PIXELS='lots'"):
        formats.read_image_rgb(tmp_path / "img.png")
