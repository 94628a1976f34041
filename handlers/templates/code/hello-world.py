# Plain Python: variables, a function, a loop and f-strings.
def greet(name: str) -> str:
    return f"Hello, {name}!"


print(greet("World"))

squares = [n * n for n in range(1, 6)]
print("Squares:", squares)
print("Sum of squares:", sum(squares))

for word in ["pyexec", "runs", "your", "code"]:
    print(f"{word:>8} has {len(word)} letters")
