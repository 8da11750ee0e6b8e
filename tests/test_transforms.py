"""Known answers for the differentiable transforms (protect/transforms.py), each against an
independent implementation: Pillow's JPEG quantisation tables, SciPy's DCT and Gaussian filter,
libjpeg's chroma resampling written out one sample at a time, and PIL's resize."""
import io

import numpy as np
import pytest
import torch
from _reference import pil_resize
from PIL import Image
from scipy import fft, ndimage

from artshield.protect import transforms as tf


def test_quality_tables_are_the_ones_pillow_writes_into_its_files():
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    for quality in (1, 10, 49, 50, 51, 75, 95, 100):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
        tables = Image.open(buf).quantization
        luma, chroma = tf.quality_tables(quality)
        assert np.array_equal(luma.numpy(), np.array(tables[0]).reshape(8, 8)), quality
        assert np.array_equal(chroma.numpy(), np.array(tables[1]).reshape(8, 8)), quality
    for quality in range(1, 101):          # every quality Pillow takes: its tables, entry for entry
        buf = io.BytesIO()
        Image.fromarray(pixels[:8, :8]).save(buf, "JPEG", quality=quality)
        tables = Image.open(buf).quantization
        assert [t.flatten().tolist() for t in tf.quality_tables(quality)] == [list(tables[0]), list(tables[1])]
    for low, high in ((30, 31), (60, 61)):     # a fractional quality lies between its integer neighbours
        for a, mid, b in zip(tf.quality_tables(low), tf.quality_tables(low + 0.5), tf.quality_tables(high)):
            assert (b <= mid).all() and (mid <= a).all() and not torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(tf.quality_tables(0), tf.quality_tables(1)))       # clamped
    assert all(torch.equal(a, b) for a, b in zip(tf.quality_tables(120), tf.quality_tables(100)))
    assert tf.quality_tables(1)[0].max() == 255 and tf.quality_tables(100)[1].min() == 1


def test_the_block_dct_is_scipys_orthonormal_dct_and_each_block_is_quantised_by_the_table():
    m = tf._dct_matrix("cpu")
    assert torch.allclose(m, torch.from_numpy(fft.dct(np.eye(8), norm="ortho", axis=0)).float(), atol=1e-6)
    # each 8 x 8 block: DCT, divided by the table, rounded, multiplied back, inverse DCT
    levels = torch.randint(-128, 128, (1, 2, 16, 8), generator=torch.Generator().manual_seed(0)).float()
    table = torch.randint(1, 40, (8, 8), generator=torch.Generator().manual_seed(1)).float()
    ours = tf._quantised(levels, table).numpy()
    for c in range(2):
        for top in (0, 8):
            block = levels[0, c, top:top + 8].double().numpy()
            kept = np.round(fft.dctn(block, norm="ortho") / table.double().numpy()) * table.double().numpy()
            assert np.abs(ours[0, c, top:top + 8] - fft.idctn(kept, norm="ortho")).max() < 1e-3
    # a smooth block under a coarse table keeps its DC alone: 320 / 255 rounds to 1, so 255 / 8 everywhere
    smooth = torch.full((1, 1, 8, 8), 40.0) + torch.linspace(-1, 1, 8).view(1, 1, 1, 8)
    assert torch.allclose(tf._quantised(smooth, torch.full((8, 8), 255.0)), torch.full_like(smooth, 255 / 8), atol=1e-4)


def test_chroma_resampling_is_libjpegs_written_out_sample_by_sample():
    g = np.random.default_rng(1)
    for rows, cols in ((6, 8), (2, 16), (4, 6)):          # wide and odd numbers of output columns too
        c = g.integers(0, 256, (1, 1, rows, cols)).astype(np.float64)
        down = tf._downsample(torch.from_numpy(c).float()).numpy()[0, 0]
        assert down.shape == (rows // 2, cols // 2)
        for i in range(rows // 2):
            for j in range(cols // 2):
                total = c[0, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].sum()
                assert down[i, j] == (total + (1 if j % 2 == 0 else 2)) // 4
    s = g.integers(0, 256, (9, 12)).astype(np.int64)
    up = tf._fancy_upsample(torch.from_numpy(s).float().view(1, 1, 9, 12)).numpy()[0, 0]
    h, w = s.shape
    for oy in range(2 * h):
        y, near = oy // 2, (oy // 2 - 1 if oy % 2 == 0 else oy // 2 + 1)
        near = min(max(near, 0), h - 1)
        col = [3 * s[y, x] + s[near, x] for x in range(w)]           # vertical: 3 x nearer row + farther
        for ox in range(2 * w):
            x = ox // 2
            if ox % 2 == 0:
                expected = (3 * col[x] + col[max(x - 1, 0)] + 8) // 16
            else:
                expected = (3 * col[x] + col[min(x + 1, w - 1)] + 7) // 16
            assert up[oy, ox] == expected, (oy, ox)


def test_jpeg_draws_its_quality_from_the_generator_and_pads_any_size_as_the_codec_does(monkeypatch):
    g = np.random.default_rng(2)
    pixels = (ndimage.gaussian_filter(g.random((21, 29, 3)), (2, 2, 0)) * 255).round().astype(np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    drawn = tf.jpeg(x, torch.Generator().manual_seed(3))
    quality = 50 + 45 * float(torch.rand(1, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(drawn, tf.jpeg(x, torch.Generator(), quality=quality))
    asked = []
    monkeypatch.setattr(tf, "quality_tables", lambda q, real=tf.quality_tables: asked.append(q) or real(q))
    tf.jpeg(x, torch.Generator().manual_seed(3))
    assert asked == [quality]
    monkeypatch.undo()
    for q, subsampling, within in ((30, True, 0.5), (75, True, 0.5), (90, True, 1.0), (75, False, 0.5)):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=q, **({} if subsampling else {"subsampling": 0}))
        pillow = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float()[None] / 255
        ours = tf.jpeg(x, torch.Generator(), quality=q, **({} if subsampling else {"subsampling": False}))
        assert ours.shape == x.shape and (ours - pillow).abs().mean() * 255 < within, (q, subsampling)
        assert (ours - pillow).abs().max() * 255 <= 16 and 0 <= ours.min() and ours.max() <= 1
    # flat colours, the saturated ones included (their chroma leaves [0, 255] before the codec clamps it):
    # Pillow's pixels within two levels (libjpeg's integer DCT), black and white exactly
    colours = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
               (255, 0, 255), (128, 64, 200)]
    for rgb in colours:
        flat = np.full((16, 16, 3), rgb, dtype=np.uint8)
        for q in (10, 75):
            buf = io.BytesIO()
            Image.fromarray(flat).save(buf, "JPEG", quality=q)
            pillow = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float()[None]
            ours = tf.jpeg(torch.from_numpy(flat).permute(2, 0, 1).float()[None] / 255, None, quality=q) * 255
            assert (ours - pillow).abs().max() <= 2.0 + 1e-4, (rgb, q, ours[0, :, 0, 0], pillow[0, :, 0, 0])
            if rgb in ((0, 0, 0), (255, 255, 255)):
                assert torch.equal(ours.round(), pillow), rgb
    # on another device (the meta device stands for a GPU) every table and kernel follows the images
    meta = torch.zeros(1, 3, 16, 16, device="meta")
    assert tf.jpeg(meta, None, quality=75).device.type == "meta"
    # lower quality, larger change
    assert (tf.jpeg(x, None, quality=10) - x).abs().mean() > (tf.jpeg(x, None, quality=90) - x).abs().mean()


def test_blur_is_scipys_gaussian_with_either_border_and_opencvs_taps():
    x = torch.rand(1, 3, 12, 15, generator=torch.Generator().manual_seed(4))
    planes = x[0].double().numpy()
    for sigma, radius in ((1.0, 3), (0.7, None), (1.0, None), (1.5, 2)):
        r = radius if radius is not None else int(np.ceil(3 * sigma))
        for border, mode in (("reflect", "mirror"), ("symmetric", "reflect")):
            ours = tf.blur(x, torch.Generator(), sigma=sigma, radius=radius, border=border)[0].double().numpy()
            theirs = np.stack([ndimage.gaussian_filter(p, sigma, mode=mode, truncate=r / sigma + 1e-9) for p in planes])
            assert np.abs(ours - theirs).max() < 1e-5, (sigma, radius, border)
    taps = np.array(tf.OPENCV_7) / sum(tf.OPENCV_7)
    ours = tf.blur(x, torch.Generator(), taps=tf.OPENCV_7, border="symmetric")[0].double().numpy()
    theirs = np.stack([ndimage.correlate1d(ndimage.correlate1d(p, taps, axis=0, mode="reflect"), taps, axis=1,
                                           mode="reflect") for p in planes])
    assert np.abs(ours - theirs).max() < 1e-5
    assert torch.equal(tf.blur(x, torch.Generator().manual_seed(5)), tf.blur(
        x, None, sigma=0.3 + 0.9 * float(torch.rand(1, generator=torch.Generator().manual_seed(5)))))
    tiny = tf.blur(x, None, sigma=0.1)                       # a radius of at least one pixel, whatever sigma
    assert torch.allclose(tiny, x, atol=1e-4)
    with pytest.raises(ValueError, match="border must be 'reflect' or 'symmetric', not 'wrap'"):
        tf.blur(x, None, sigma=1.0, border="wrap")
    # any float type and device: the kernel follows the images
    assert torch.allclose(tf.blur(x.double(), None, sigma=0.8), tf.blur(x, None, sigma=0.8).double(), atol=1e-6)
    assert torch.allclose(tf.blur(x.double(), None, taps=tf.OPENCV_7), tf.blur(x, None, taps=tf.OPENCV_7).double(),
                          atol=1e-6)
    meta = torch.zeros(1, 3, 16, 16, device="meta")
    assert tf.blur(meta, None, sigma=1.0).device.type == "meta"
    assert tf.blur(meta, None, taps=tf.OPENCV_7, border="symmetric").device.type == "meta"


def test_resize_goes_down_with_pils_antialiased_bilinear_and_back_up():
    x = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(6))

    for factor, (h, w) in ((0.5, (10, 15)), (0.7, (14, 21)), (0.62, (12, 19))):
        ours = tf.resize(x, None, factor=factor)[0].numpy()
        theirs = pil_resize(pil_resize(x[0], h, w), 20, 30).clamp(0, 1).numpy()
        assert np.abs(ours - theirs).max() < 1e-4, factor
    # 2 rows at a half go through a single row (so both rows come back equal), 2 columns likewise
    wide = tf.resize(x[:, :, :2, :8], None, factor=0.5)
    assert torch.allclose(wide[..., 0, :], wide[..., 1, :], atol=1e-6)
    assert not torch.allclose(wide[..., 0], wide[..., 1], atol=1e-3)
    tall = tf.resize(x[:, :, :8, :2], None, factor=0.5)
    assert torch.allclose(tall[..., 0], tall[..., 1], atol=1e-6)
    assert torch.equal(tf.resize(x, torch.Generator().manual_seed(7)), tf.resize(
        x, None, factor=0.5 + 0.4 * float(torch.rand(1, generator=torch.Generator().manual_seed(7)))))
    assert tf.resize(torch.rand(1, 3, 1, 3), None, factor=0.5).shape == (1, 3, 1, 3)       # never 0 pixels


def test_hflip_mirrors_when_the_draw_is_under_a_half():
    x = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(8))
    for seed in range(8):
        draw = float(torch.rand(1, generator=torch.Generator().manual_seed(seed)))
        out = tf.hflip(x, torch.Generator().manual_seed(seed))
        assert torch.equal(out, x.flip(-1) if draw < 0.5 else x), seed
    assert tf.TRANSFORMS == {"jpeg": tf.jpeg, "blur": tf.blur, "resize": tf.resize, "hflip": tf.hflip}


@pytest.mark.parametrize("name", ["jpeg", "resize", "blur"])
def test_transforms_work_on_a_batch_one_image_at_a_time(name):
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    kwargs = {"jpeg": {"quality": 60}, "resize": {"factor": 0.6}, "blur": {"sigma": 0.8}}[name]
    batch = tf.TRANSFORMS[name](x, None, **kwargs)
    alone = torch.cat([tf.TRANSFORMS[name](x[i:i + 1], None, **kwargs) for i in range(3)])
    assert torch.allclose(batch, alone, atol=1e-6)
