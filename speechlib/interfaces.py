"""One source of truth for the facts that cross process boundaries.

Model names, tensor names, the sample rate and the default ports are defined here once and imported by
the Triton models (``model_repository/*/1/model.py``), the client (``inference_client``), the launcher
and the tests. ``tests/test_model_configs.py`` checks that every ``config.pbtxt`` agrees with this file.
"""

from __future__ import annotations

SAMPLE_RATE = 16000
"""Every waveform that crosses a boundary is 16 kHz mono float32 in [-1, 1]."""

# Triton's ports (the api owns 8000). Triton is internal: compose publishes none of these.
TRITON_HTTP_PORT = 8100
TRITON_GRPC_PORT = 8101
TRITON_METRICS_PORT = 8102

# Custom metric every network-running model publishes: the batch size it actually passes to the
# network runtime (onnxruntime / torch), as a histogram.
BATCH_SIZE_METRIC = "intrascribe_network_batch_size"
BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64]


class VAD:
    """``vad``: whole 16 kHz waveforms (ragged, dynamically batched) -> speech segments in ms."""

    NAME = "vad"
    WAVEFORM = "WAVEFORM"  # FP32 [-1] per request: samples in [-1, 1]
    MAX_END_SILENCE_MS = "MAX_END_SILENCE_MS"  # INT32 [1], optional: gap that ends a segment
    SEGMENTS = "SEGMENTS"  # INT32 [-1, 2]: rows of (start_ms, end_ms), sorted, non-overlapping


class VADStream:
    """``vad_stream``: one stream per CORRID (sequence batcher), 100-200 ms chunks -> events.

    Each response carries the events decided by that chunk as rows ``(start_ms, end_ms)``:
    ``(s, -1)`` speech started at ``s``; ``(-1, e)`` the open segment ended at ``e``; ``(s, e)`` a
    whole segment began and ended within the chunk. Times are from the start of the stream.
    """

    NAME = "vad_stream"
    AUDIO_CHUNK = "AUDIO_CHUNK"  # FP32 [-1]: the next samples of the stream (may be empty on END)
    MAX_END_SILENCE_MS = "MAX_END_SILENCE_MS"  # INT32 [1], optional; read on the START request
    EVENTS = "EVENTS"  # INT32 [-1, 2]
    # Sequence-batcher control tensors (config.pbtxt names them too).
    START = "START"
    END = "END"
    READY = "READY"
    CORRID = "CORRID"


NO_TIME = -1
"""Marks the missing half of a streaming event row."""


class ASR:
    """``asr``: utterances (<= 30 s each, ragged, dynamically batched) -> text, tags, token timestamps.

    FunASR SenseVoiceSmall: fbank 80 / LFR 7,6 / CMVN -> encoder -> CTC greedy -> detokenize, plus CTC
    forced alignment for token times, all inside the model (logits never leave the process).
    """

    NAME = "asr"
    WAVEFORM = "WAVEFORM"  # FP32 [-1] per request: 16 kHz samples in [-1, 1], at most MAX_SECONDS
    LANGUAGE = "LANGUAGE"  # BYTES [1], optional: a code speechlib.languages understands ("auto" default)
    USE_ITN = "USE_ITN"  # BOOL [1], optional: inverse text normalisation (punctuation, numbers); default on
    TEXT = "TEXT"  # BYTES [1]: the transcript, tags removed
    DETECTED_LANGUAGE = "DETECTED_LANGUAGE"  # BYTES [1]: zh / en / yue / ja / ko / nospeech
    EMOTION = "EMOTION"  # BYTES [1]: e.g. NEUTRAL, HAPPY (the <|...|> tag's name), "" if none
    EVENT = "EVENT"  # BYTES [1]: e.g. Speech, BGM, Laughter, "" if none
    TOKENS = "TOKENS"  # BYTES [-1]: text pieces (sentencepiece strings), in order
    TOKEN_IDS = "TOKEN_IDS"  # INT32 [-1]: their ids
    TOKEN_TIMES_MS = "TOKEN_TIMES_MS"  # INT32 [-1, 2]: (start_ms, end_ms) of each text piece
    TOKEN_PROBS = "TOKEN_PROBS"  # FP32 [-1]: each text piece's CTC posterior (mean over its greedy frames)
    MAX_SECONDS = 30.05  # fsmn-VAD may cut a segment 10 ms past its 30 s cap


class Transcribe:
    """``transcribe`` (BLS): <= 60 s of audio -> VAD segments, each transcribed by ``asr``."""

    NAME = "transcribe"
    WAVEFORM = "WAVEFORM"  # FP32 [-1]: 16 kHz samples in [-1, 1], at most MAX_SECONDS
    LANGUAGE = "LANGUAGE"  # BYTES [1], optional
    USE_ITN = "USE_ITN"  # BOOL [1], optional
    SEGMENTS = "SEGMENTS"  # INT32 [-1, 2]: (start_ms, end_ms) of each speech segment
    TEXTS = "TEXTS"  # BYTES [-1]: one transcript per segment
    LANGUAGES = "LANGUAGES"  # BYTES [-1]
    EMOTIONS = "EMOTIONS"  # BYTES [-1]
    EVENTS = "EVENTS"  # BYTES [-1]
    MAX_SECONDS = 60.0


class Segmentation:
    """``segmentation``: pyannote segmentation-3.0 on fixed 10 s windows -> powerset scores."""

    NAME = "segmentation"
    WAVEFORM = "WAVEFORM"  # FP32 [1, 160000] per window (batch dim in front)
    SCORES = "SCORES"  # FP32 [589, 7]: log-softmax powerset scores per frame (as pyannote's model outputs)
    WINDOW_SAMPLES = 160000
    NUM_FRAMES = 589  # output frames per window
    NUM_CLASSES = 7  # powerset classes: {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}


class SpeakerEmbedding:
    """``speaker_embedding``: 10 s windows + per-local-speaker frame masks -> WeSpeaker embeddings.

    The ResNet trunk runs once per window; each active speaker's mask pools its frame features.
    """

    NAME = "speaker_embedding"
    WAVEFORM = "WAVEFORM"  # FP32 [1, 160000] per window
    MASKS = "MASKS"  # FP32 [S, 589]: activity weights of the window's S (<= 3) local speakers
    EMBEDDINGS = "EMBEDDINGS"  # FP32 [S, D] (D = 256 for ResNet34); all-zero masks give NaN rows (skipped)
    WINDOW_SAMPLES = Segmentation.WINDOW_SAMPLES
    NUM_FRAMES = Segmentation.NUM_FRAMES
    MAX_SPEAKERS = 8  # most local speakers (mask rows) per request
