"""A synthetic English speech corpus in the public dataset layouts (test and demo data, not a runtime part).

The package: :mod:`~.common` (constants, the plan's records, speakers),
:mod:`~.plan` (what to speak, layout by layout: LibriSpeech, Speech Commands,
VoxCeleb1, FSC here; :mod:`~.quesst`, :mod:`~.snips`, :mod:`~.covost`),
:mod:`~.audio` (espeak-ng and rendering), :mod:`~.metadata` (label and split
files) and :mod:`~.build` (:func:`synthesize_corpus`).

ofactl's tests, examples and demo recipe cannot download LibriSpeech or the
SUPERB datasets, so :func:`synthesize_corpus` speaks them with espeak-ng
(a command-line program, called without a shell) and writes them exactly as
the public releases are laid out, so the same readers (ours, torchaudio's,
s3prl's) accept the real and the synthetic data::

    OUT_DIR/
      LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/
          <spk>-<chapter>-<NNNN>.flac
          <spk>-<chapter>.trans.txt       "<utt-id> UPPERCASE WORDS"
          <spk>-<chapter>.phones.txt      "<utt-id> p h o n e s" (our extension)
      LibriSpeech/SPEAKERS.TXT
      speech_commands_v0.01/<word>/<hash8>_nohash_<n>.wav      (1 s, 16000 samples)
      speech_commands_v0.01/{validation_list,testing_list}.txt
      speech_commands_v0.01/_background_noise_/{white_noise,pink_noise,hum}.wav
      speech_commands_test_set_v0.01/<keyword>/<hash8>_nohash_<n>.wav
      speech_commands_test_set_v0.01/_unknown_/<word>_<hash8>_nohash_<n>.wav.wav
      speech_commands_test_set_v0.01/_silence_/<hash8>_nohash_<n>.wav
      VoxCeleb1/wav/id1NNNN/<11-char video>/<NNNNN>.wav
      VoxCeleb1/iden_split.txt                "<1|2|3> id10001/<video>/00001.wav"
      fluent_speech_commands_dataset/wavs/speakers/<speakerId>/<uuid>.wav
      fluent_speech_commands_dataset/data/{train,valid,test}_data.csv
      quesst14Database/Audio/quesst14_NNNNN.wav                 (documents)
      quesst14Database/{dev_queries/quesst14_dev_NNNN,eval_queries/quesst14_eval_NNNN}.wav
      quesst14Database/scoring/language_key_{utterances,dev,eval}.lst
          "quesst14Database/Audio/quesst14_00001.wav nnenglish"
      quesst14Database/scoring/groundtruth_quesst14_{dev,eval}/quesst14_{dev,eval}.rttm
          "LEXEME quesst14_00007 1 <tbeg> <tdur> quesst14_dev_0001 lex <NA> <NA>"
      SNIPS/{train,valid,test}/<Voice>-snips-<split>-<n>.wav        (Audio SNIPS)
      SNIPS/all.iob.snips.txt  "<id> BOS WORDS EOS<TAB>O <slot per word> <Intent>"
      SNIPS/slots.txt          "O" then the slot names, most frequent first
      CoVoST2/covost_v2.en_de.{train,dev,test}.tsv   "path<TAB>sentence<TAB>translation<TAB>client_id"
      CoVoST2/clips/common_voice_en_<n>.mp3         (CoVoST 2 En->De: English speech, German text)
      .done                                   JSON: arguments and counts

Layout notes (what the real releases do, mirrored on purpose):

* LibriSpeech and Fluent Speech Commands have disjoint speakers across
  train/dev/test; Speech Commands assigns speakers to validation/testing by
  TensorFlow's ``which_set`` hash of the ``<hash8>`` prefix (the rule s3prl's
  KS reader applies instead of reading the list files), and our hashes are
  drawn so that the rule and ``validation_list.txt``/``testing_list.txt`` agree.
* The separate Speech Commands test set (what s3prl's KS test reads) has
  class folders for the ten keywords, ``_unknown_`` and ``_silence_``;
  its ``_unknown_`` files carry the real archive's double ``.wav.wav``
  extension.
* VoxCeleb1 is the merged ``wav/`` tree that unzipping both official zips
  into one folder gives (torchaudio's and Hugging Face's layout).  s3prl's
  SID reader instead globs ``VoxCeleb1/*/wav/<path>`` (``dev/wav`` and
  ``test/wav``); a ``dev/wav -> ../wav`` symlink satisfies it.
  Speaker ids are consecutive from ``id10001`` and every speaker is in all
  three identification splits (closed-set).

Sizes: ``utterances`` (U) is the LibriSpeech count over ``speakers`` (N)
speakers.  The other layouts follow these rules (for the defaults N=8,
U=200 the whole corpus is 571 files, 0.37 hours, 35 MB):

* speaker roles: ``max(1, round(N/10))`` speakers each for dev and test,
  the rest train (the same speakers in LibriSpeech, Speech Commands and FSC);
* LibriSpeech: U utterances, ``U // N`` per speaker (+1 for the first
  ``U % N``), one chapter per speaker, 4-14 words each;
* Speech Commands: every speaker says the ten keywords and four of the
  twenty auxiliary v0.01 words ``max(1, round(U / (25 N)))`` times; the test
  set has, per test speaker, the ten keywords, two ``_unknown_`` words and
  two ``_silence_`` clips; three 15 s background noise files;
* VoxCeleb1: ``max(3, round(U / (4 N)))`` utterances per speaker, one in
  dev (split 2, its own video), one in test (split 3, its own video), the
  rest in train (split 1, four per video);
* Fluent Speech Commands: ``max(2, round(U / (3 N)))`` commands per
  speaker from the 31 FSC intents; train cycles through the intents, valid
  and test only use slot values seen in train (s3prl's IC reader builds its
  label maps from train);
* QUESST 2014 (query by example, English only): ``Q = min(30, max(2,
  round(U / 20)))`` dev and ``Q`` eval queries, one per query term (a
  two-word phrase of words of five letters or more, spoken alone);
  ``max(4 Q + 4, min(400, round(U / 4)))`` documents, sentences of 4-10
  words of the rest of the vocabulary, each term inserted into two of them
  (at most one term per document; the others contain none).  Queries are
  spoken by ``max(1, N // 3)`` of the speakers, documents by the others.
  The RTTM times of an occurrence are estimated from its character
  position in the sentence (espeak-ng gives no word timings); the
  scorer's ``.ecf.xml``/``.tlist.xml`` files are not written.
* Audio SNIPS (slot filling, the layout s3prl's ``snips_prepare_data.sh``
  writes): ``S = max(12, min(1000, round(0.3 U)))`` utterances of seven
  SNIPS intents (PlayMusic, AddToPlaylist, GetWeather, BookRestaurant,
  RateBook, SearchCreativeWork, SearchScreeningEvent) from a few templates
  with slot values drawn from small lists; ``max(2, round(0.15 S))`` each
  in ``valid`` and ``test``, the rest in ``train`` (which cycles through every
  template first).  Train speakers take SUPERB's train voice names (``Ivy``,
  ``Joanna``, ...), dev speakers the valid names, test speakers the test
  names (at most 8 / 4 / 4 speakers), so s3prl's speaker filter keeps them;
  each sentence is spoken once.  Slot tags are plain slot names (``O``
  outside), as in the published annotation.
* CoVoST 2 En->De (speech translation; the three split files CoVoST's
  ``get_covost_splits.py`` writes, next to a Common Voice ``clips`` folder):
  ``C = max(30, min(2000, 3 U))`` English sentences from the
  template grammar of :mod:`ofactl.testing.synth.covost` with their German
  translations; ``H = max(4, round(0.1 C))`` each in dev and test (spoken
  by the dev / test speakers; more with ``dev_utterances`` /
  ``test_utterances``), ``C - 2 H`` in train.  Clips are mp3 as in Common Voice
  (16 kHz mono here; Common Voice's are 48 kHz) and ``client_id`` is a
  128-hex-digit speaker hash.

Each speaker is one espeak-ng voice variant with a fixed pitch, speed,
amplitude and word gap, a fixed spectral colour (a peaking filter and a
first-order tilt) and a fixed vocal-tract warp (a resampling factor that
moves formants and pitch together); utterances jitter pitch and speed a
little around the speaker's values.  White noise is added at 30-40 dB SNR.
Everything is drawn from ``seed``: the same seed gives byte-identical files.
"""

from __future__ import annotations

from ofactl.testing.synth.build import SynthReport, synthesize_corpus
from ofactl.testing.synth.common import (
    AUXILIARY_WORDS,
    KEYWORDS,
    LAYOUT_ROOTS,
    PHONES,
    SAMPLE_RATE,
    VOCABULARY,
)

__all__ = [
    "AUXILIARY_WORDS",
    "KEYWORDS",
    "LAYOUT_ROOTS",
    "PHONES",
    "SAMPLE_RATE",
    "VOCABULARY",
    "SynthReport",
    "synthesize_corpus",
]
