// Placeholder: the FUSE daemon is being written.
int main() { return 1; }
