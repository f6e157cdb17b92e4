fn main() { print!("{}", rheo_operator::crd::crd_yaml()); }
