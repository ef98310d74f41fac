fn main() {
    println!("bonsai");
}
