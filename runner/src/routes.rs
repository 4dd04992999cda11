//! The HttpApi's routes, as `template.yaml` declares them.

use lambda_http::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    StockQuery,
    Buy,
    Orders,
    Admin,
}

impl Function {
    /// The function's logical id in template.yaml.
    pub fn logical_id(self) -> &'static str {
        match self {
            Self::StockQuery => "StockQueryFunction",
            Self::Buy => "BuyFunction",
            Self::Orders => "OrdersFunction",
            Self::Admin => "AdminFunction",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// Any valid token (the JWT authorizer).
    User,
    /// A valid token whose `scope` holds `admin` (authorization scopes on the route).
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// API Gateway route syntax: `{name}` matches one path segment.
    pub path: &'static str,
    pub function: Function,
    pub auth: Auth,
}

pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/products/{product_id}/stock", function: Function::StockQuery, auth: Auth::None },
    Route { method: "POST", path: "/buy", function: Function::Buy, auth: Auth::User },
    Route { method: "GET", path: "/orders/{receipt}", function: Function::Orders, auth: Auth::User },
    Route { method: "POST", path: "/orders/{receipt}/pay", function: Function::Orders, auth: Auth::User },
    Route { method: "POST", path: "/admin/products", function: Function::Admin, auth: Auth::Admin },
    Route { method: "GET", path: "/admin/products", function: Function::Admin, auth: Auth::Admin },
    Route { method: "POST", path: "/admin/activities", function: Function::Admin, auth: Auth::Admin },
    Route { method: "GET", path: "/admin/activities", function: Function::Admin, auth: Auth::Admin },
    Route { method: "PATCH", path: "/admin/activities/{id}", function: Function::Admin, auth: Auth::Admin },
    Route { method: "POST", path: "/admin/activities/{id}/warmup", function: Function::Admin, auth: Auth::Admin },
    Route { method: "POST", path: "/admin/activities/{id}/publish", function: Function::Admin, auth: Auth::Admin },
    Route { method: "GET", path: "/admin/activities/{id}/reconcile", function: Function::Admin, auth: Auth::Admin },
    Route { method: "GET", path: "/admin/orders", function: Function::Admin, auth: Auth::Admin },
];

/// The outcome of matching a request against the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Matched<'a> {
    Route(&'a Route, Vec<(String, String)>),
    WrongMethod,
    NoRoute,
}

/// Matches `method path` like API Gateway: literal segments equal, `{name}` any one segment.
pub fn find<'a>(routes: &'a [Route], method: &Method, path: &str) -> Matched<'a> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut path_matched = false;
    for route in routes {
        let pattern: Vec<&str> = route.path.trim_start_matches('/').split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let fits =
            pattern.iter().zip(&segments).all(|(p, s)| match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    params.push((name.to_owned(), (*s).to_owned()));
                    !s.is_empty()
                }
                None => p == s,
            });
        if !fits {
            continue;
        }
        if route.method == method.as_str() {
            return Matched::Route(route, params);
        }
        path_matched = true;
    }
    if path_matched { Matched::WrongMethod } else { Matched::NoRoute }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_captured_and_methods_checked() {
        match find(ROUTES, &Method::GET, "/products/42/stock") {
            Matched::Route(r, params) => {
                assert_eq!(r.function, Function::StockQuery);
                assert_eq!(params, vec![("product_id".to_owned(), "42".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(find(ROUTES, &Method::GET, "/buy"), Matched::WrongMethod);
        assert_eq!(find(ROUTES, &Method::GET, "/products//stock"), Matched::NoRoute);
        assert_eq!(find(ROUTES, &Method::GET, "/nope"), Matched::NoRoute);
    }
}
