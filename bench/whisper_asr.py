"""Whisper (voice/whisper.py) on rendered Mandarin: how well it hears open questions and
closed answers, and what an utterance costs. `python -m bench.whisper_asr` prints JSON.

Speech is espeak-ng's Mandarin voice (`cmn-latn-pinyin`: the plain `cmn` voice of espeak-ng
1.51 reads most characters as English-spelled pinyin), narrowed to 8 kHz as on a phone line and
brought back to 16 kHz the way SpeechRecognition feeds the recogniser; the 16 kHz figure skips
the narrowing. Whisper runs in this process with exactly the worker's settings (`transcribe`,
then `clean_text`). Closed answers are scored the way the dialogue core reads them: a yes/no
answer by its yes and no words (negations first), digits by `parse_digits`. Bounded: about 60
utterances, a minute or two on two cores.
"""

from __future__ import annotations

import json
import statistics
import time

from bench.samples import speech
from bot.actions.parsing import parse_digits
from flowspec.model import load_answers
from voice.audio import resample
from voice.whisper import clean_text, model_directory, transcribe

VOICE = "cmn-latn-pinyin"
THREADS = 1  # CPU-seconds are what a worker spends whatever its thread count
OPEN_SENTENCES = (
    "我想查一下我的账单", "我要提前还款", "帮我转人工", "我的额度还有多少",
    "这个月的还款日是哪天", "我要投诉", "我的卡丢了要挂失", "我想改一下手机号码",
)
DIGIT_ANSWERS = ("一二三四", "六二八一", "五九零七", "三八四六二五", "幺三八零零一三八零零零", "七", "九")


def edit_distance(reference: str, hypothesis: str) -> int:
    row = list(range(len(hypothesis) + 1))
    for i, expected in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, heard in enumerate(hypothesis, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (expected != heard))
    return row[-1]


def character_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Edits over reference characters, pooled over all (reference, hypothesis) pairs."""
    return sum(edit_distance(ref, hyp) for ref, hyp in pairs) / sum(len(ref) for ref, _ in pairs)


def _heard(text: str, rate: int, cpu_seconds: list[float]) -> str:
    pcm = speech(text, rate, voice=VOICE)
    pcm = resample(pcm, rate, 16000) if rate != 16000 else pcm
    started = time.process_time()
    heard = clean_text(transcribe(str(model_directory(None)), THREADS, pcm))
    cpu_seconds.append(time.process_time() - started)
    return heard


def _yes_no(text: str) -> bool | None:
    answers = load_answers()
    if any(word in text for word in answers.no):
        return False
    return True if any(word in text for word in answers.yes) else None


def figures() -> dict:
    cpu: list[float] = []
    transcribe(str(model_directory(None)), THREADS, bytes(3200))  # load the model outside the figures
    result: dict = {}
    for rate in (8000, 16000):
        pairs = [(sentence, _heard(sentence, rate, cpu)) for sentence in OPEN_SENTENCES]
        result[f"open_cer_{rate // 1000}k"] = round(character_error_rate(pairs), 3)
        result[f"open_heard_{rate // 1000}k"] = dict(pairs)
    answers = load_answers()
    verdicts = {word: _yes_no(_heard(word, 8000, cpu)) for word in (*answers.yes, *answers.no)}
    truth = {word: word in answers.yes for word in verdicts}
    result["yes_no_8k"] = {"answers": len(verdicts),
                           "right": sum(verdicts[w] is truth[w] for w in verdicts),
                           "wrong": sum(verdicts[w] is (not truth[w]) for w in verdicts),
                           "not_recognised": sum(verdicts[w] is None for w in verdicts)}
    digits = {answer: parse_digits(_heard(answer, 8000, cpu)) for answer in DIGIT_ANSWERS}
    result["digits_8k"] = {"answers": len(digits),
                           "right": sum(parse_digits(answer) == heard for answer, heard in digits.items()),
                           "heard": digits}
    result["cpu_seconds_per_utterance_p50"] = round(statistics.median(cpu), 2)
    result["cpu_seconds_per_utterance_max"] = round(max(cpu), 2)
    result["utterances"] = len(cpu)
    return result


if __name__ == "__main__":
    print(json.dumps(figures(), ensure_ascii=False, indent=2))
