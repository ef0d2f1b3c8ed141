// Placeholder: envelopectl is being written.
int main() { return 1; }
