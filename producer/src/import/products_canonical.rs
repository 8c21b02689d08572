//! The `products` column in its common shape, read without serde: millions of rows a
//! second spend much of their validation time here. [`canonical_products`] accepts only
//! `[{"sku":"S","quantity":Q},…]` (either key first) with no white space, skus without
//! escapes or control characters, quantities 1–99999 without leading zeros, and every
//! rule of `validate::parse_products` met; anything else goes to the serde path, which
//! names what is wrong. Where it gives items, they are the ones the serde path gives
//! (tested below).

use std::borrow::Cow;

use oms_shared::order::rules::{check_sku, quantity_allowed, MAX_ITEMS, MAX_SKU_CHARS};
use oms_shared::order::OrderItemRef;

/// The items of one row, as both paths give them: inline up to 4, so the common row
/// allocates nothing.
pub type ProductItems<'a> = smallvec::SmallVec<[OrderItemRef<'a>; 4]>;

/// The items of `text` when it has the common shape and meets every rule; `None` for
/// anything else.
pub fn canonical_products(text: &str) -> Option<ProductItems<'_>> {
    let mut rest = text.strip_prefix('[')?.strip_suffix(']')?;
    let mut items = ProductItems::new();
    for _entry in 0..MAX_ITEMS {
        let (sku, quantity, after) = canonical_item(rest)?;
        // `canonical_item` lets no byte below 0x20 through (so no NUL): a sku of 1 to 64
        // bytes that starts with visible ASCII meets `check_sku` without the walk.
        let plain =
            sku.len() <= MAX_SKU_CHARS && sku.as_bytes().first().is_some_and(u8::is_ascii_graphic);
        if !plain {
            check_sku(sku).ok()?;
        }
        match items.iter_mut().find(|item| item.sku == sku) {
            Some(item) => {
                item.quantity += quantity;
                if !quantity_allowed(u64::from(item.quantity)) {
                    return None;
                }
            }
            None => items.push(OrderItemRef {
                sku: Cow::Borrowed(sku),
                quantity,
            }),
        }
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None if after.is_empty() => return Some(items),
            None => return None,
        }
    }
    None // More than MAX_ITEMS entries.
}

/// One `{"sku":"S","quantity":Q}` (or quantity first) at the start of `text`: the sku,
/// the quantity (1 to `MAX_QUANTITY`) and what follows.
fn canonical_item(text: &str) -> Option<(&str, u32, &str)> {
    fn string(text: &str) -> Option<(&str, &str)> {
        let body = text.strip_prefix('"')?;
        let end = body
            .bytes()
            .position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
        (body.as_bytes()[end] == b'"').then(|| (&body[..end], &body[end + 1..]))
    }
    fn quantity(text: &str) -> Option<(u32, &str)> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=5).contains(&digits) || text.starts_with('0') {
            return None;
        }
        let q: u32 = text[..digits].parse().ok()?;
        quantity_allowed(u64::from(q)).then(|| (q, &text[digits..]))
    }
    let text = text.strip_prefix('{')?;
    let (sku, q, rest) = if let Some(rest) = text.strip_prefix("\"sku\":") {
        let (sku, rest) = string(rest)?;
        let (q, rest) = quantity(rest.strip_prefix(",\"quantity\":")?)?;
        (sku, q, rest)
    } else {
        let (q, rest) = quantity(text.strip_prefix("\"quantity\":")?)?;
        let (sku, rest) = string(rest.strip_prefix(",\"sku\":")?)?;
        (sku, q, rest)
    };
    Some((sku, q, rest.strip_prefix('}')?))
}

#[cfg(test)]
mod tests {
    use super::super::validate::{parse_products, parse_products_serde};
    use super::*;

    #[test]
    fn canonical_products_agree_with_serde() {
        let many = |n: usize, sku: &dyn Fn(usize) -> String| {
            let items: Vec<String> = (0..n)
                .map(|i| format!("{{\"sku\":\"{}\",\"quantity\":1}}", sku(i)))
                .collect();
            format!("[{}]", items.join(","))
        };
        let mut texts: Vec<String> = [
            r#"[{"sku":"SKU-1","quantity":2}]"#,
            r#"[{"quantity":2,"sku":"SKU-1"},{"sku":"SKU-2","quantity":10000}]"#,
            r#"[{"sku":"A","quantity":6000},{"sku":"A","quantity":4000}]"#,
            r#"[{"sku":"A","quantity":6000},{"sku":"A","quantity":4001}]"#,
            r#"[{"sku":"A","quantity":0}]"#,
            r#"[{"sku":"A","quantity":01}]"#,
            r#"[{"sku":"A","quantity":10001}]"#,
            r#"[{"sku":"A","quantity":123456}]"#,
            r#"[{"sku":"A","quantity":1.0}]"#,
            r#"[{"sku":"A","quantity":1e2}]"#,
            r#"[{"sku":"A","quantity":-1}]"#,
            r#"[{"sku":"A","quantity":"1"}]"#,
            r#"[{"sku":"A"}]"#,
            r#"[{"sku":"","quantity":1}]"#,
            r#"[{"sku":" ","quantity":1}]"#,
            r#"[{"sku":"A\"B","quantity":1}]"#,
            r#"[{"sku":"A\u0042","quantity":1}]"#,
            r#"[{"sku":"A\\","quantity":1}]"#,
            r#"[{"sku":"A","quantity":1,"x":2}]"#,
            r#"[{"sku":"A","sku":"B","quantity":1}]"#,
            r#"[{"sku":"A","quantity":1} ]"#,
            r#"[{"sku":"A","quantity":1}],"#,
            r#"[{"sku":"A","quantity":1}]x"#,
            r#"[{"sku":"A","quantity":1},]"#,
            r#"[]"#,
            r#"[1]"#,
            r#"{"sku":"A","quantity":1}"#,
            r#"[{"sku":"Zoë – 山","quantity":3}]"#,
            "[{\"sku\":\"A\tB\",\"quantity\":1}]",
            "[{\"sku\":\"A\0B\",\"quantity\":1}]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        texts.push(many(100, &|i| format!("S{i}")));
        texts.push(many(101, &|i| format!("S{i}")));
        texts.push(many(101, &|i| format!("S{}", i % 3)));
        texts.push(many(1, &|_| "x".repeat(64)));
        texts.push(many(1, &|_| "x".repeat(65)));
        texts.push(many(1, &|_| "é".repeat(64)));
        for text in &texts {
            let serde = parse_products_serde(text);
            if let Some(fast) = canonical_products(text) {
                assert_eq!(Ok(fast), serde, "{text}");
            }
            assert_eq!(parse_products(text), serde, "{text}");
        }
        assert!(canonical_products(&texts[0]).is_some());
        assert!(canonical_products(&texts[2]).is_some());
    }
}
