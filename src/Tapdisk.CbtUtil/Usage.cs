namespace Tapdisk.CbtUtil;

/// <summary>cbt-util's usage texts, as blktap prints them (reference-transcript.md 11.1), all on stdout.</summary>
internal static class Usage
{
    public const string Main = "usage: cbt-util COMMAND [OPTIONS]\nCOMMAND := { create | set | get | coalesce }\n";

    public const string Create = "cbt-util create: Create new CBT metadata log with default values\n\nOptions:\n\t-n Log file name\n\t-s Num blocks in bitmap\n\t[-h help]\n";

    public const string Get = "cbt-util get: Read field from log file\n\nOptions:\n -n name\tName of log file\n[-p]\t\tPrint parent log file UUID\n[-c]\t\tPrint child log file UUID\n[-f]\t\tPrint consistency flag\n[-s]\t\tPrint size of disk in bytes\n[-b]\t\tPrint bitmap contents\n[-h]\t\thelp\n";

    public const string Set = "cbt-util set: Set field in log file\n\nOptions:\n -n name\tName of log file\n[-p parent]\tParent log file UUID\n[-c child]\tChild log file UUID\n[-f 0|1]\tConsistency flag\n[-s size]\tSize of the disk in bytes\n[-h]\t\thelp\n";

    public const string Coalesce = "cbt-util coalesce: Coalesce contents of parent bitmap on to child bitmap\n\nOptions:\n\t-p Parent log file name\n\t-c Child log file name\n\t[-h help]\n";
}
