"""One OFA student, many frame periods: run a student at several lambdas.

A randomly initialised tiny student (no checkpoint needed) turns 3 s of audio
into fewer and fewer frames as lambda grows; the measured frame period is
seconds of audio per output frame.  With a trained model
(``ofactl.checkpoint.load_model(DIR)``) the same loop gives the real periods.

Run: python examples/student_at_several_lambdas.py
"""

from __future__ import annotations

import torch

from ofactl.model import OFAStudent, StudentConfig

SAMPLE_RATE = 16_000


def main() -> None:
    torch.manual_seed(0)
    model = OFAStudent(StudentConfig.preset("tiny")).eval()
    # two utterances of 3.0 s and 1.7 s in one padded batch
    durations_s = [3.0, 1.7]
    lengths = torch.tensor([int(d * SAMPLE_RATE) for d in durations_s])
    audio = torch.randn(len(durations_s), int(lengths.max())) * 0.1

    print(f"{'lambda':>7} {'frames':>12} {'period (ms)':>12}")
    with torch.inference_mode():
        for lam in (0.0, 0.5, 1.0, 1.5, 1.9, 1.99):
            out = model(audio, lengths, lam, predict=False)
            frames = out.lengths.tolist()
            period_ms = 1000 * sum(durations_s) / max(sum(frames), 1)
            print(f"{lam:7.2f} {str(frames):>12} {period_ms:12.1f}")
            assert out.hidden_states[-1].shape[1] == max(frames)


if __name__ == "__main__":
    main()
