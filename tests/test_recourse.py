"""The recourse problem (chapter 5): every refusal of the weights, the problem, the evaluation, the feature
domains, the statuses and the timing, the domain's messages and open bounds, and the margin on every SCM."""

import math
import re

import pytest
import torch

from carma_nb.classifier import train_classifier
from carma_nb.data import make_pools
from carma_nb.recourse import (
    DOMAIN_MARGIN,
    as_weights,
    describe_domain,
    domain_messages,
    evaluate_recourse,
    feature_domain,
    make_recommendation,
    outside_domain,
    recourse_problem,
    recourse_status,
    rejected,
    time_per_person,
    training_range,
)
from carma_nb.scm import SCM_NAMES, get_scm


@pytest.fixture(scope='module')
def loan():
    "Chapter 5's setting: loan's pools, problem, the quick profile's classifier and its rejected test people."
    pools = make_pools('loan')
    clf = train_classifier('loan', pools.classifier, 'quick', verbose=False)
    return pools, recourse_problem('loan', pools), clf, rejected(clf, pools.recourse.test.x)


def income_plus(people, amount):
    "The naive action of chapter 5: raise income (feature 5) and nothing else."
    m = torch.zeros(len(people), 7, dtype=torch.bool)
    m[:, 5] = True
    v = people.clone()
    v[:, 5] += amount
    return m, v


def test_weights_per_feature_and_refusals():
    per_feature = as_weights('loan', [3, 2, 2, 1])
    assert torch.equal(as_weights('loan', per_feature), torch.tensor([1, 1, 3, 2, 1, 2, 1.0]))  # (D,) as is
    with pytest.raises(ValueError, match='3 weights but loan has 4 actionable features'):
        as_weights('loan', [3, 2, 2])
    with pytest.raises(ValueError, match='≥ 1'):
        as_weights('loan', [3, 2, 0.5, 1])
    with pytest.raises(ValueError, match=re.escape("'age' of loan is not actionable (immutable)")):
        as_weights('loan', {'age': 2})


def test_problem_refuses_what_it_cannot_use(loan):
    pools, problem, clf, _ = loan
    orig = recourse_problem('loan', pools, ranges_from='rejected', clf=clf)
    assert (problem.ranges_from, orig.ranges_from) == ('all', 'rejected')
    with pytest.raises(ValueError, match='ranges_from must be one of'):
        recourse_problem('loan', pools, ranges_from='some')
    with pytest.raises(ValueError, match='pass clf='):
        recourse_problem('loan', pools, ranges_from='rejected')
    with pytest.raises(ValueError, match="only with ranges_from='rejected'"):
        recourse_problem('loan', pools, clf=clf)
    with pytest.raises(ValueError, match=re.escape('limit (how many rejected people to keep)')):
        rejected(clf, pools.recourse.test.x, limit=-1)


def test_recommendation_rows_and_evaluation_refusals(loan):
    _, problem, clf, people = loan
    m, v = income_plus(people, 3)
    naive = make_recommendation('loan', clf, people, m, v)
    assert len(naive.rows(slice(0, 3))) == 3
    assert naive.rows(naive.prob >= 0.5).prob.min() >= 0.5
    with pytest.raises(ValueError, match='one action per person'):
        evaluate_recourse(problem, clf, people, naive.rows(slice(0, 1)))
    with pytest.raises(TypeError, match='rec must be a Recommendation'):
        evaluate_recourse(problem, clf, people, (m, v))


def test_domain_messages_and_the_scms_open_bounds(loan):
    pools = loan[0]
    dom = feature_domain('loan', training_range(pools.recourse.train.x))
    odd = pools.recourse.test.x[:6].double().clone()
    odd_values = [('gender', 7), ('gender', 0.5), ('education', 0.7), ('age', -1000), ('age', 1e30)]
    odd_values.append(('income', math.inf))
    for i, (col, val) in enumerate(odd_values):
        odd[i, get_scm('loan').index(col)] = val
    msgs = domain_messages(dom, odd, outside_domain(dom, odd))
    assert msgs[3].startswith('age -1000 outside [')
    assert msgs[3].endswith("(the training data's range widened by 10 %)")
    assert msgs[5] == 'income inf outside ' + describe_domain(dom, 5) + ' (not a finite number)'
    wide = feature_domain(
        'loan', torch.tensor([[0.0, -30, -0.49, -9, -9, -9, -9], [1.0, 50, 0.49, 9, 9, 9, 9]])
    )
    assert describe_domain(wide, 2) == '(-0.5, 0.5)'  # the SCM's open bounds win
    edu = torch.zeros(2, 7, dtype=torch.float64)
    edu[:, 2] = torch.tensor([0.5, 0.4999])
    assert outside_domain(wide, edu).any(1).tolist() == [True, False]
    only0 = feature_domain('loan', torch.tensor([[0.0] * 7, [0.0, 1, 0, 1, 1, 1, 1]]))
    assert describe_domain(only0, 0) == '{0}'  # only 0 seen in training


def test_domain_refusals(loan):
    pools = loan[0]
    dom = feature_domain('loan', training_range(pools.recourse.train.x))
    x = pools.recourse.test.x[:6].double()
    only0 = feature_domain('loan', torch.tensor([[0.0] * 7, [0.0, 1, 0, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match=re.escape('(2, 7)')):
        feature_domain('loan', torch.zeros(2, 4))
    with pytest.raises(ValueError, match='min > max'):
        feature_domain('loan', torch.tensor([[1.0] * 7, [0.0] * 7]))
    with pytest.raises(ValueError, match='margin must be'):
        feature_domain('loan', only0.low[None].expand(2, 7), margin=-1)
    with pytest.raises(ValueError, match=re.escape('(n, 7)')):
        outside_domain(dom, torch.zeros(2, 3))
    with pytest.raises(ValueError, match='feature index 0 … 6'):
        describe_domain(dom, 7)
    with pytest.raises(ValueError, match='shaped like x'):
        domain_messages(dom, x, outside_domain(dom, x)[:2])


@pytest.mark.parametrize('name', SCM_NAMES)
def test_the_margin_lets_every_test_person_in(name):
    "Without the margin 1 to 3 of the 5 000 test people are refused; with it, none."
    p = make_pools(name)
    refused = lambda margin: int(
        outside_domain(feature_domain(name, training_range(p.recourse.train.x), margin), p.recourse.test.x)
        .any(1)
        .sum()
    )
    assert 1 <= refused(0.0) <= 3
    assert refused(DOMAIN_MARGIN) == 0


def test_status_and_timing_refuse_bad_arguments(loan):
    pools, _, clf, people = loan
    dom = feature_domain('loan', training_range(pools.recourse.train.x))
    x5 = people[:5]
    m5, v5 = income_plus(x5, 3)
    cf5 = get_scm('loan').counterfactual(x5, m5, v5)
    with torch.no_grad():
        p5 = clf.predict_proba(cf5)
    with pytest.raises(ValueError, match='one answer per person'):
        recourse_status(dom, x5, m5[:2], cf5, p5 >= 0.5, p5)
    replay = lambda xb: get_scm('loan').counterfactual(xb, m5[: len(xb)], v5[: len(xb)])
    with pytest.raises(ValueError, match=re.escape('batch (people per batched call)')):
        time_per_person(replay, x5, batch=0)
