"""The one audio decoder (any file, native or resampled), array resampling and WAV writing."""
import numpy as np
import pytest
import soundfile as sf

from helpers import write_aac
from emocast.errors import InputError, UnreadableMedia
from emocast.media.audio import decode_audio, resample, resample_chunks, to_mono, write_wav
from emocast.media.video_writer import VideoWriter


def _tone(seconds, rate, channels=2):
    t = np.arange(int(round(seconds * rate))) / rate
    return np.stack([0.3 * (1 - 0.2 * c) * np.sin(2 * np.pi * 220 * t) for c in range(channels)]).astype(np.float32)


def test_native_decode_is_the_source_samples(tmp_path):
    """PCM16 comes out at its own rate and channel count, each sample exactly its integer / 32768."""
    ints = np.random.default_rng(0).integers(-32768, 32767, (2, 3000), dtype=np.int16)
    sf.write(tmp_path / "a.wav", ints.T, 22050, subtype="PCM_16")
    wave, rate = decode_audio(tmp_path / "a.wav")
    assert rate == 22050 and wave.dtype == np.float32
    np.testing.assert_array_equal(wave, ints / np.float32(32768))


def test_resampled_decode_of_a_video_track(tmp_path):
    """The AAC stereo 44.1 kHz track of an mp4 -> 16 kHz mono float32, or int16 with sample_format s16."""
    path = tmp_path / "v.mp4"
    with VideoWriter(path, audio_array=_tone(1.0, 44100), audio_rate=44100) as w:
        w.write(np.zeros((25, 16, 16, 3), np.uint8))
    wave, rate = decode_audio(path, rate=16000, layout="mono")
    assert rate == 16000 and wave.shape[0] == 1 and wave.dtype == np.float32
    assert abs(wave.shape[1] - 16000) <= 1024  # AAC frames: at most one frame of padding
    peak = np.argmax(np.abs(np.fft.rfft(wave[0, :16000])))  # 1 Hz bins over one second
    assert abs(peak - 220) <= 2
    ints, _ = decode_audio(path, rate=16000, layout="mono", sample_format="s16")
    assert ints.dtype == np.int16 and ints.shape == wave.shape


def test_a_video_without_audio_gives_none(tmp_path):
    with VideoWriter(tmp_path / "v.mp4") as w:
        w.write(np.zeros((2, 16, 16, 3), np.uint8))
    assert decode_audio(tmp_path / "v.mp4") is None


def test_unreadable_file_is_an_input_error_naming_it(tmp_path):
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A " + b"junk" * 100)
    with pytest.raises(UnreadableMedia) as err:
        decode_audio(bad)
    assert isinstance(err.value, InputError) and str(bad) in str(err.value) and "Fix:" in str(err.value)


def test_resample_and_mono():
    wave = _tone(2.0, 22050)
    out = resample(wave, 22050, 16000)
    assert out.shape[0] == 2 and abs(out.shape[1] - 32000) <= 16
    assert resample(wave, 16000, 16000) is not None and resample(wave[:1], 22050, 16000).shape[0] == 1
    np.testing.assert_allclose(to_mono(np.stack([np.ones(4), 3 * np.ones(4)])), 2 * np.ones(4))


@pytest.mark.parametrize("channels, rate, target", [(1, 16000, 44100), (2, 44100, 16000), (3, 48000, 44100)])
def test_resample_chunks_equals_resampling_the_whole_signal(channels, rate, target):
    """One swresample stream fed pieces of any size gives exactly the whole signal's resampling (the streamed
    vocal separation relies on it)."""
    wave = np.random.default_rng(0).standard_normal((channels, 3 * rate + 17)).astype(np.float32)
    sizes = iter([7, rate // 3, 1, 5 * rate, 999] * 10)
    pieces, start = [], 0
    while start < wave.shape[1]:
        size = next(sizes)
        pieces.append(wave[:, start:start + size])
        start += size
    got = np.concatenate(list(resample_chunks(iter(pieces), rate, target)), axis=1)
    np.testing.assert_array_equal(got, resample(wave, rate, target))
    assert list(resample_chunks(iter([]), rate, target)) == []


def test_write_wav_round_trip(tmp_path):
    """PCM16 keeps every sample to within one quantisation step; FLOAT keeps it exactly."""
    wave = _tone(0.5, 16000)
    write_wav(tmp_path / "a.wav", wave, 16000)
    got, rate = decode_audio(tmp_path / "a.wav")
    assert rate == 16000 and got.shape == wave.shape and np.abs(got - wave).max() <= 1 / 32768
    write_wav(tmp_path / "f.wav", wave[0], 16000, subtype="FLOAT")
    np.testing.assert_array_equal(decode_audio(tmp_path / "f.wav")[0], wave[:1])


@pytest.mark.parametrize("name,container_format,rate", [("a.m4a", "ipod", 16000), ("a.m4a", "ipod", 44100),
                                                        ("a.mp4", "mp4", 48000), ("v.mp4", None, 16000)])
def test_aac_padding_is_cut_so_a_600_ms_file_gives_15_frames(tmp_path, name, container_format, rate):
    """AAC decodes to whole 1024-sample codec frames; the padding past the declared end is cut, so the decoded
    audio is the recording's length and 0.600 s drive exactly 15 video frames (M4A, MP4 audio, a video's track)."""
    from emocast.preprocess.audio import load_speech

    wave = _tone(0.6, rate, channels=1)[0]
    path = tmp_path / name
    if container_format is None:  # the audio track of a video
        with VideoWriter(path, audio_array=wave, audio_rate=rate) as w:
            w.write(np.zeros((15, 16, 16, 3), np.uint8))
    else:
        write_aac(path, wave, rate, container_format)
    decoded, got_rate = decode_audio(path)
    assert got_rate == rate and decoded.shape == (1, len(wave))
    assert decode_audio(path, rate=16000, layout="mono")[0].shape == (1, 9600)
    assert load_speech(path)[1] == 15
