//! Label selectors (a PVC's `spec.selector` over PV labels) and node selector terms (a PV's
//! `nodeAffinity.required` over Node labels), with upstream's semantics:
//! - label selector: `matchLabels` and `matchExpressions` are ANDed; `{}` matches everything.
//! - node selector: terms are ORed, the requirements inside one term ANDed; an empty term
//!   matches nothing; a term that does not parse is skipped and its error is reported only if
//!   no other term matches (`LazyErrorNodeSelector.Match`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Does `selector` match `labels`? `Err` names a selector that does not parse (upstream fails
/// the claim's sync with it; validation normally rejects such selectors at create).
pub fn label_selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let mut ok = true;
    if let Some(ml) = &selector.match_labels {
        for (k, v) in ml {
            if labels.get(k) != Some(v) {
                ok = false;
            }
        }
    }
    if let Some(exprs) = &selector.match_expressions {
        for e in exprs {
            let values = e.values.as_deref().unwrap_or(&[]);
            let have = labels.get(&e.key);
            let m = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(
                        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
                            .to_string(),
                    )
                }
                "In" => have.is_some_and(|h| values.contains(h)),
                "NotIn" => !have.is_some_and(|h| values.contains(h)),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                    ))
                }
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            ok &= m;
        }
    }
    Ok(ok)
}

/// `MatchNodeSelectorTerms` for a node with `labels` and name `node_name` (pass "" for the
/// PV-affinity check, which builds a node carrying labels only, so `matchFields` on
/// `metadata.name` never matches there).
pub fn node_selector_terms_match(
    terms: &[NodeSelectorTerm],
    labels: &BTreeMap<String, String>,
    node_name: &str,
) -> Result<bool, String> {
    let mut errs: Vec<String> = Vec::new();
    for term in terms {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            // An empty term matches no objects.
            continue;
        }
        let mut term_errs = Vec::new();
        let mut matched = true;
        for r in exprs {
            match requirement_matches(r, labels.get(&r.key).map(String::as_str)) {
                Ok(m) => matched &= m,
                Err(e) => term_errs.push(e),
            }
        }
        for r in fields {
            if r.key != "metadata.name" {
                term_errs.push(format!("not a valid field selector key: {:?}", r.key));
                continue;
            }
            if !(r.operator == "In" || r.operator == "NotIn")
                || r.values.as_ref().map_or(0, Vec::len) != 1
            {
                term_errs.push(format!(
                    "unexpected number of value (1) or operator for field selector on {:?}",
                    r.key
                ));
                continue;
            }
            let name = (!node_name.is_empty()).then_some(node_name);
            match requirement_matches(r, name) {
                Ok(m) => matched &= m,
                Err(e) => term_errs.push(e),
            }
        }
        if !term_errs.is_empty() {
            errs.extend(term_errs);
            continue;
        }
        if matched {
            return Ok(true);
        }
    }
    if errs.is_empty() {
        Ok(false)
    } else {
        Err(errs.join(", "))
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, have: Option<&str>) -> Result<bool, String> {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => Err(
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
                .to_string(),
        ),
        "In" => Ok(have.is_some_and(|h| values.iter().any(|v| v == h))),
        "NotIn" => Ok(!have.is_some_and(|h| values.iter().any(|v| v == h))),
        "Exists" | "DoesNotExist" if !values.is_empty() => Err(format!(
            "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
        )),
        "Exists" => Ok(have.is_some()),
        "DoesNotExist" => Ok(have.is_none()),
        "Gt" | "Lt" => {
            let bound: i64 = match values {
                [v] => v.parse().map_err(|_| {
                    format!("values[0]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer")
                })?,
                _ => {
                    return Err(format!(
                        "values: Invalid value: {values:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    ))
                }
            };
            let Some(h) = have else { return Ok(false) };
            let Ok(h) = h.parse::<i64>() else { return Ok(false) };
            Ok(if r.operator == "Gt" { h > bound } else { h < bound })
        }
        other => Err(format!("{other:?} is not a valid label selector operator")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, vals: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!vals.is_empty()).then(|| vals.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn label_selector_semantics() {
        let l = labels(&[("tier", "fast"), ("zone", "a")]);
        let empty = LabelSelector::default();
        assert_eq!(label_selector_matches(&empty, &l), Ok(true));
        let sel = LabelSelector {
            match_labels: Some([("tier".to_string(), "fast".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "zone".into(),
                operator: "NotIn".into(),
                values: Some(vec!["b".into()]),
            }]),
        };
        assert_eq!(label_selector_matches(&sel, &l), Ok(true));
        assert_eq!(
            label_selector_matches(&sel, &labels(&[("tier", "slow")])),
            Ok(false)
        );
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "zone".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(label_selector_matches(&bad, &l).is_err());
    }

    #[test]
    fn node_terms_or_of_ands() {
        let l = labels(&[("kubernetes.io/hostname", "node-1"), ("rank", "5")]);
        let t1 = NodeSelectorTerm {
            match_expressions: Some(vec![req("kubernetes.io/hostname", "In", &["node-2"])]),
            match_fields: None,
        };
        let t2 = NodeSelectorTerm {
            match_expressions: Some(vec![
                req("kubernetes.io/hostname", "In", &["node-1"]),
                req("rank", "Gt", &["3"]),
            ]),
            match_fields: None,
        };
        assert_eq!(node_selector_terms_match(&[t1.clone()], &l, ""), Ok(false));
        assert_eq!(node_selector_terms_match(&[t1, t2], &l, ""), Ok(true));
        // An empty term matches nothing.
        assert_eq!(
            node_selector_terms_match(&[NodeSelectorTerm::default()], &l, ""),
            Ok(false)
        );
        // matchFields on metadata.name never matches a label-only node.
        let f = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["node-1"])]),
        };
        assert_eq!(node_selector_terms_match(&[f.clone()], &l, ""), Ok(false));
        assert_eq!(node_selector_terms_match(&[f], &l, "node-1"), Ok(true));
        // A broken term is an error only when nothing else matches.
        let broken = NodeSelectorTerm {
            match_expressions: Some(vec![req("x", "Bogus", &[])]),
            match_fields: None,
        };
        assert!(node_selector_terms_match(&[broken.clone()], &l, "").is_err());
        let good = NodeSelectorTerm {
            match_expressions: Some(vec![req("rank", "Exists", &[])]),
            match_fields: None,
        };
        assert_eq!(node_selector_terms_match(&[broken, good], &l, ""), Ok(true));
    }
}
