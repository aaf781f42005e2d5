#!/usr/bin/env python3
"""Plain-Python transcription of sacreBLEU 2.x's default corpus BLEU and chrF.

Used to produce (and re-check) the expected values of tests/metrics/test_bleu.cpp, since the
sacrebleu package itself cannot be installed where the tests run. Written from sacreBLEU's sources
(github.com/mjpost/sacrebleu, 2.x; read, not copied), one function per piece:

  tokenize_13a        sacrebleu/tokenizers/tokenizer_13a.py  Tokenizer13a.__call__
                      sacrebleu/tokenizers/tokenizer_re.py   TokenizerRegexp (the 4 regexes + split/join)
  bleu_preprocess     sacrebleu/metrics/bleu.py              BLEU._preprocess_segment (rstrip, no lowercase)
  word_ngrams         sacrebleu/metrics/helpers.py           extract_all_word_ngrams
  bleu_ref_info       sacrebleu/metrics/bleu.py              BLEU._extract_reference_info (max count over refs)
  closest_ref_len     sacrebleu/metrics/bleu.py              BLEU._get_closest_ref_len (ties: shorter)
  bleu_segment_stats  sacrebleu/metrics/bleu.py              BLEU._compute_segment_statistics (clipping)
  compute_bleu        sacrebleu/metrics/bleu.py              BLEU.compute_bleu (bp, early zero, 'exp' smoothing)
                      sacrebleu/utils.py                     my_log (log(0) = -9999999999)
  references_by_seg   sacrebleu/metrics/base.py              Metric._cache_references ('' refs dropped, nrefs/var)
  chrf_ngrams         sacrebleu/metrics/helpers.py           extract_all_char_ngrams (whitespace removed)
  chrf_match_stats    sacrebleu/metrics/chrf.py              CHRF._get_match_statistics
  chrf_f_score        sacrebleu/metrics/chrf.py              CHRF._compute_f_score (effective order / eps)
  corpus_chrf         sacrebleu/metrics/chrf.py              CHRF._compute_segment_statistics (best ref by F)

Usage:
  bleu_reference.py --write bleu_cases.json   recompute every case's expected values into the file
  bleu_reference.py --check bleu_cases.json   recompute and compare with the file (exit 1 on a mismatch);
                                              also checks the transcription against published sacreBLEU values
"""
import json
import math
import re
import sys
from collections import Counter

SACREBLEU_VERSION = "2.3.1"
MAX_NGRAM_ORDER = 4

# --- tokenizer_13a.py + tokenizer_re.py ---------------------------------------------------------
_RE_13A = [
    (re.compile(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])'), r' \1 '),  # punctuation except ' , - .
    (re.compile(r'([^0-9])([\.,])'), r'\1 \2 '),              # . and , unless preceded by a digit
    (re.compile(r'([\.,])([^0-9])'), r' \1 \2'),              # . and , unless followed by a digit
    (re.compile(r'([0-9])(-)'), r'\1 \2 '),                   # dash preceded by a digit
]


def tokenize_13a(line):
    line = line.replace('<skipped>', '')
    line = line.replace('-\n', '')
    line = line.replace('\n', ' ')
    if '&' in line:
        line = line.replace('&quot;', '"')
        line = line.replace('&amp;', '&')
        line = line.replace('&lt;', '<')
        line = line.replace('&gt;', '>')
    line = f' {line} '
    for rx, repl in _RE_13A:
        line = rx.sub(repl, line)
    return ' '.join(line.split())


# --- bleu.py --------------------------------------------------------------------------------------
def bleu_preprocess(sent):
    return tokenize_13a(sent.rstrip())


def word_ngrams(line, max_order):
    tokens = line.split()
    grams = []
    for n in range(1, max_order + 1):
        for i in range(0, len(tokens) - n + 1):
            grams.append(tuple(tokens[i:i + n]))
    return Counter(grams), len(tokens)


def bleu_ref_info(refs):
    ngrams, ref_lens = None, []
    for ref in refs:
        this, ref_len = word_ngrams(ref, MAX_NGRAM_ORDER)
        ref_lens.append(ref_len)
        if ngrams is None:
            ngrams = this
        else:
            for g, c in this.items():
                ngrams[g] = max(ngrams[g], c)
    return ngrams, ref_lens


def closest_ref_len(hyp_len, ref_lens):
    closest_diff, closest_len = -1, -1
    for ref_len in ref_lens:
        diff = abs(hyp_len - ref_len)
        if closest_diff == -1 or diff < closest_diff:
            closest_diff, closest_len = diff, ref_len
        elif diff == closest_diff and ref_len < closest_len:
            closest_len = ref_len
    return closest_len


def bleu_segment_stats(hyp, ref_ngrams, ref_lens):
    hyp_ngrams, hyp_len = word_ngrams(hyp, MAX_NGRAM_ORDER)
    ref_len = closest_ref_len(hyp_len, ref_lens)
    correct = [0] * MAX_NGRAM_ORDER
    total = [0] * MAX_NGRAM_ORDER
    for g, c in hyp_ngrams.items():
        n = len(g) - 1
        total[n] += c
        if g in ref_ngrams:
            correct[n] += min(c, ref_ngrams[g])
    return [hyp_len, ref_len] + correct + total


def my_log(x):
    return -9999999999 if x == 0.0 else math.log(x)


def compute_bleu(correct, total, sys_len, ref_len):
    """smooth_method='exp', effective_order=False, max_ngram_order=4."""
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        bp = 1.0
    precisions = [0.0] * MAX_NGRAM_ORDER
    if not any(correct):
        score = 0.0
    else:
        smooth_mteval = 1.0
        for n in range(1, MAX_NGRAM_ORDER + 1):
            if total[n - 1] == 0:
                break
            if correct[n - 1] == 0:
                smooth_mteval *= 2
                precisions[n - 1] = 100. / (smooth_mteval * total[n - 1])
            else:
                precisions[n - 1] = 100. * correct[n - 1] / total[n - 1]
        score = bp * math.exp(sum([my_log(p) for p in precisions[:MAX_NGRAM_ORDER]]) / MAX_NGRAM_ORDER)
    ratio = sys_len / ref_len if ref_len else 0
    return {'score': score, 'precisions': precisions, 'counts': list(correct), 'totals': list(total),
            'bp': bp, 'ratio': ratio, 'sys_len': sys_len, 'ref_len': ref_len}


def references_by_segment(ref_streams, preprocess):
    segs, nrefs = [], set()
    for refs in zip(*ref_streams):
        lines = [x for x in refs if x is not None and x != '']
        if not lines:
            raise RuntimeError('Empty or `None` reference sentence found.')
        nrefs.add(len(lines))
        segs.append([preprocess(x) for x in lines])
    return segs, (nrefs.pop() if len(nrefs) == 1 else 'var')


def corpus_bleu(hyps, ref_streams):
    segs, nrefs = references_by_segment(ref_streams, bleu_preprocess)
    stats = [0] * (2 + 2 * MAX_NGRAM_ORDER)
    for hyp, refs in zip(hyps, segs):
        ref_ngrams, ref_lens = bleu_ref_info(refs)
        s = bleu_segment_stats(bleu_preprocess(hyp), ref_ngrams, ref_lens)
        stats = [a + b for a, b in zip(stats, s)]
    r = compute_bleu(stats[2:2 + MAX_NGRAM_ORDER], stats[2 + MAX_NGRAM_ORDER:], stats[0], stats[1])
    r['signature'] = f'nrefs:{nrefs}|case:mixed|eff:no|tok:13a|smooth:exp|version:{SACREBLEU_VERSION}'
    prec = '/'.join(f'{p:.1f}' for p in r['precisions'])
    r['format'] = (f"BLEU = {r['score']:.2f} {prec} (BP = {r['bp']:.3f} ratio = {r['ratio']:.3f} "
                   f"hyp_len = {r['sys_len']:d} ref_len = {r['ref_len']:d})")
    return r


# --- chrf.py --------------------------------------------------------------------------------------
def chrf_ngrams(line, max_order, whitespace=False):
    if not whitespace:
        line = ''.join(line.split())
    return [Counter([line[i:i + n] for i in range(len(line) - n + 1)]) for n in range(1, max_order + 1)]


def chrf_match_stats(hyp_ngrams, ref_ngrams):
    match_count, hyp_count = 0, 0
    for g, c in hyp_ngrams.items():
        hyp_count += c
        if g in ref_ngrams:
            match_count += min(c, ref_ngrams[g])
    return [hyp_count if ref_ngrams else 0, sum(ref_ngrams.values()), match_count]


def chrf_f_score(stats, order, beta, eps_smoothing):
    eps = 1e-16
    score = 0.0
    effective_order = 0
    factor = beta ** 2
    avg_prec, avg_rec = 0.0, 0.0
    for i in range(order):
        n_hyp, n_ref, n_match = stats[3 * i:3 * i + 3]
        prec = n_match / n_hyp if n_hyp > 0 else eps
        rec = n_match / n_ref if n_ref > 0 else eps
        denom = factor * prec + rec
        score += ((1 + factor) * prec * rec / denom) if denom > 0 else eps
        if n_hyp > 0 and n_ref > 0:
            avg_prec += prec
            avg_rec += rec
            effective_order += 1
    if eps_smoothing:
        return 100 * score / order
    if effective_order == 0:
        avg_prec = avg_rec = 0.0
    else:
        avg_prec /= effective_order
        avg_rec /= effective_order
    if avg_prec + avg_rec:
        score = (1 + factor) * avg_prec * avg_rec
        score /= ((factor * avg_prec) + avg_rec)
        return 100 * score
    return 0.0


def corpus_chrf(hyps, ref_streams, char_order=6, beta=2, eps_smoothing=False, whitespace=False):
    segs, nrefs = references_by_segment(ref_streams, lambda s: s)
    total = [0] * (3 * char_order)
    for hyp, refs in zip(hyps, segs):
        hyp_ngrams = chrf_ngrams(hyp, char_order, whitespace)
        best_stats, best_f = [], -1.0
        for ref in refs:
            stats = []
            for h, r in zip(hyp_ngrams, chrf_ngrams(ref, char_order, whitespace)):
                stats.extend(chrf_match_stats(h, r))
            f = chrf_f_score(stats, char_order, beta, eps_smoothing)
            if f > best_f:
                best_f, best_stats = f, stats
        total = [a + b for a, b in zip(total, best_stats)]
    score = chrf_f_score(total, char_order, beta, eps_smoothing)
    eff = 'no' if eps_smoothing else 'yes'
    space = 'yes' if whitespace else 'no'
    return {'score': score, 'stats': total,
            'signature': f'nrefs:{nrefs}|case:mixed|eff:{eff}|nc:{char_order}|nw:0|space:{space}|version:{SACREBLEU_VERSION}',
            'format': f'chrF{beta} = {score:.2f}'}


# --- published sacreBLEU values: the transcription must reproduce them -------------------------------
_README_REFS = [['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
                ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.']]
_README_SYS = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.']


def self_test():
    """Values printed in sacreBLEU's README (2.0.0) and asserted in its test/test_bleu.py, test_chrf.py."""
    failures = []

    def expect(what, got, want, tol):
        if abs(got - want) > tol:
            failures.append(f'{what}: got {got!r}, sacreBLEU publishes {want!r}')

    b = corpus_bleu(_README_SYS, _README_REFS)
    expect('README corpus BLEU (test_bleu.py)', b['score'], 48.530827, 1e-6)
    if b['format'] != 'BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)':
        failures.append(f"README BLEU format: {b['format']}")
    expect('empty hypotheses (test_bleu.py)', corpus_bleu(['', '', ''], _README_REFS)['score'], 0.0, 0.0)
    var = corpus_bleu(_README_SYS, [[''] + _README_REFS[0][1:], _README_REFS[1]])
    if not var['format'].startswith('BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)'):
        failures.append(f"README variable refs: {var['format']}")
    if not var['signature'].startswith('nrefs:var|'):
        failures.append(f"README variable refs signature: {var['signature']}")
    expect('README chrF', corpus_chrf(_README_SYS, _README_REFS)['score'], 59.73, 0.005)
    # test_chrf.py: char_order=6, word_order=0, beta=3
    for h, r, want in [(['abcdefg'], ['hijklmnop'], 0.0), (['a'], ['b'], 0.0), ([''], ['b'], 0.0),
                       ([''], ['ref'], 0.0), ([''], ['reference'], 0.0), (['aa'], ['ab'], 8.3333),
                       (['a', 'b'], ['a', 'c'], 8.3333), (['a'], ['a'], 16.6667), (['a b c'], ['a b c'], 50.0),
                       (['a b c'], ['abc'], 50.0)]:
        expect(f'test_chrf eps {h} {r}', corpus_chrf(h, [r], beta=3, eps_smoothing=True)['score'], want, 1e-4)
    for h, r, want in [(['a'], ['a'], 100.0), ([''], ['reference'], 0.0), (['a b c'], ['a b c'], 100.0),
                       (['a b c'], ['abc'], 100.0), ([''], ['c'], 0.0), (['a', 'b'], ['a', 'c'], 50.0),
                       (['aa'], ['ab'], 25.0)]:
        expect(f'test_chrf eff {h} {r}', corpus_chrf(h, [r], beta=3)['score'], want, 1e-4)
    expect('test_chrf eps Obama', corpus_chrf(
        [' Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. '],
        [['Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich.']],
        beta=3, eps_smoothing=True)['score'], 64.1302698, 1e-4)
    return failures


# --- the case file --------------------------------------------------------------------------------
def evaluate(case):
    out = {}
    if 'tokenize' in case:
        out['tokenized'] = [tokenize_13a(s) for s in case['tokenize']]
    if 'hyps' in case:
        out['bleu'] = corpus_bleu(case['hyps'], case['refs'])
        out['chrf'] = corpus_chrf(case['hyps'], case['refs'])
    return out


def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def main(argv):
    if len(argv) != 3 or argv[1] not in ('--write', '--check'):
        print(__doc__)
        return 2
    failures = self_test()
    with open(argv[2], encoding='utf-8') as f:
        cases = json.load(f)
    for case in cases:
        got = evaluate(case)
        if argv[1] == '--write':
            case['expected'] = got
        elif not close(got, case.get('expected')):
            failures.append(f"case {case['name']}: transcription gives {json.dumps(got, ensure_ascii=False)}, "
                            f"file has {json.dumps(case.get('expected'), ensure_ascii=False)}")
    if argv[1] == '--write' and not failures:
        with open(argv[2], 'w', encoding='utf-8') as f:
            json.dump(cases, f, indent=1, ensure_ascii=False)
            f.write('\n')
    for msg in failures:
        print('FAIL', msg)
    print(f'{len(cases)} cases, {len(failures)} failures')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
