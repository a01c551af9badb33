//! An ordered set of environment variables.

/// Environment variables in the order Kubeflow appends them, each name once. The order is part
/// of the result: on Kubernetes a later variable may refer to an earlier one (`$(NAME)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        Env::default()
    }

    /// Sets `name`: replaces its value where it stands, or appends it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The names in order.
    pub fn names(&self) -> Vec<&str> {
        self.vars.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

impl IntoIterator for Env {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.vars.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::Env;

    #[test]
    fn set_keeps_the_first_position_and_the_last_value() {
        let mut env = Env::new();
        env.set("B", "1");
        env.set("A", "2");
        env.set("B", "3");
        assert_eq!(env.iter().collect::<Vec<_>>(), [("B", "3"), ("A", "2")]);
        assert_eq!(env.get("A"), Some("2"));
        assert_eq!(env.get("C"), None);
        assert_eq!(env.len(), 2);
    }
}
