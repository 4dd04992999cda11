//! Receipts: `{activity_id}-{product_id}-{user}-{n}` (DESIGN.md), unique because `n` comes out
//! of the atomic decrement (or the per-activity counter for unlimited stock).

/// The product id a receipt names (`{activity}-{product}-{user}-{n}`), if it is well formed.
pub fn receipt_product(receipt: &str) -> Option<u64> {
    if receipt.is_empty() || receipt.len() > 255 {
        return None;
    }
    let mut parts = receipt.splitn(3, '-');
    let activity = parts.next()?;
    let product = parts.next()?;
    let rest = parts.next()?;
    if !activity.bytes().all(|b| b.is_ascii_digit()) || rest.rsplit_once('-').is_none() {
        return None;
    }
    product.parse().ok().filter(|id| crate::domain::valid_id(*id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_name_their_product() {
        assert_eq!(receipt_product("3-7-alice-100"), Some(7));
        assert_eq!(receipt_product("3-7-user-with-dashes-u12"), Some(7));
        assert_eq!(receipt_product("3-7-alice"), None);
        assert_eq!(receipt_product("x-7-alice-1"), None);
        assert_eq!(receipt_product("3-0-alice-1"), None);
        assert_eq!(receipt_product(""), None);
    }
}
