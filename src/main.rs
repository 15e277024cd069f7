fn main() {
    print!("{}", deprovisioner::crd::all_yaml().unwrap());
}
